// The shape of a periodic task: a name from the permanent list and a `run` that does the work for one
// business date and returns counts for the run record. The runner around it handles locking, the
// once-per-date rule, time limits and the run record.
import type { PgBoss } from 'pg-boss';
import { z } from 'zod';
import type { Config } from '../config.ts';
import type { DatabasePool } from '../db/pool.ts';
import { isoDate, type IsoDate } from '../domain/dates.ts';
import type { Logger } from '../log.ts';
import type { PeriodicTaskName } from '../queue/task-names.ts';

export type TaskCounts = Record<string, number>;

export type TaskDeps = {
  config: Config;
  pool: DatabasePool;
  boss: PgBoss;
  log: Logger;
  /** The wall clock (injectable so tests can move business dates). */
  now: () => Date;
};

export type TaskRunContext = TaskDeps & {
  date: IsoDate;
  force: boolean;
  runId: number;
  signal: AbortSignal;
  /**
   * What the run has done so far, kept up to date by the task as its work commits: a run that fails or is
   * stopped midway records these as its counts, so the record says how far it got.
   */
  progress: TaskCounts;
};

export type PeriodicTask = {
  name: PeriodicTaskName;
  description: string;
  run(ctx: TaskRunContext): Promise<TaskCounts>;
  /** What `run` would do on the date, read-only and without external I/O (no gateway, no webhook). */
  dryRun(ctx: TaskDeps & { date: IsoDate }): Promise<TaskCounts>;
};

/** The payload of a periodic task's job. Cron-fired jobs carry none; manual runs name the date. */
export const periodicTaskPayload = z
  .object({
    date: isoDate.optional(),
    force: z.boolean().optional(),
  })
  .strict();
