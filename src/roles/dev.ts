// `dev` (what `npm start` runs): the whole service in one process for a developer. Without DATABASE_URL it
// starts an embedded PostgreSQL kept in .data/, migrates, and runs every role. This is the only place
// development defaults exist; production roles never fall back to them.
import { createHash } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { ConfigError, loadConfig, requireFor } from '../config.ts';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../dev/embedded-postgres.ts';
import { EXIT } from '../errors.ts';
import { runUntilSignalled, type Running } from '../lifecycle.ts';
import { createLogger } from '../log.ts';
import { DEV_DATA_DIR } from '../paths.ts';
import { startAll } from './all.ts';
import { runMigrate } from './migrate.ts';

/** The embedded cluster lives in .data/postgres unless its parents are closed to the postgres user. */
function embeddedDataDir(): string {
  const configured = process.env.EMBEDDED_PG_DIR;
  if (configured !== undefined && configured !== '') return resolve(configured);
  const preferred = join(DEV_DATA_DIR, 'postgres');
  if (process.getuid?.() !== 0) return preferred;
  for (let current = dirname(preferred); current !== dirname(current); current = dirname(current)) {
    if (existsSync(current) && (statSync(current).mode & 0o001) === 0) {
      const id = createHash('sha256').update(preferred).digest('hex').slice(0, 12);
      return join(tmpdir(), `recorrencias-dev-${id}`, 'postgres');
    }
  }
  return preferred;
}

export async function runDev(_args: string[]): Promise<number> {
  let config;
  try {
    config = loadConfig(
      { LOG_FORMAT: process.stdout.isTTY ? 'pretty' : 'json', ...process.env },
      { development: true },
    );
    requireFor(config, ['adminToken']);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`);
      return EXIT.usage;
    }
    throw error;
  }
  const log = createLogger({ level: config.log.level, format: config.log.format, role: 'dev' });

  return runUntilSignalled(log, async (signal) => {
    let embedded: EmbeddedPostgres | undefined;
    let databaseUrl = config.databaseUrl;
    try {
      if (databaseUrl === undefined) {
        const dataDir = embeddedDataDir();
        log.info({ dataDir }, 'DATABASE_URL not set: starting embedded PostgreSQL');
        embedded = await startEmbeddedPostgres({ dataDir, onLog: (line) => log.debug({ postgres: line }) });
        await embedded.createDatabase('recorrencias');
        databaseUrl = embedded.url('recorrencias');
        log.info({ databaseUrl, pid: embedded.pid() }, 'embedded PostgreSQL ready');
      }
      await runMigrate({ config, log, databaseUrl, signal });
      const all = await startAll({ config, log, databaseUrl, signal });
      log.info(
        { admin: all.adminUrl, database: databaseUrl },
        `recorrencias is running; admin server at ${all.adminUrl} (Ctrl-C stops everything)`,
      );
      const running: Running = {
        stop: async () => {
          await all.stop();
          if (embedded !== undefined) {
            await embedded.stop();
            log.info('embedded PostgreSQL stopped');
          }
        },
      };
      return running;
    } catch (error) {
      await embedded?.stop();
      throw error;
    }
  });
}
