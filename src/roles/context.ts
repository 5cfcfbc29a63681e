// What every role receives from main: the parsed configuration, its logger, the database URL it runs
// against and an abort signal that fires when the process is asked to stop.
import type { Config } from '../config.ts';
import type { Logger } from '../log.ts';

export type RoleContext = {
  config: Config;
  log: Logger;
  databaseUrl: string;
  signal: AbortSignal;
};
