// `dev` (what `npm start` runs): the whole service in one process for a developer. Without DATABASE_URL it
// starts an embedded PostgreSQL kept in .data/, migrates, and runs every role. The development defaults live
// here and in config.ts's development mode (admin on 127.0.0.1, no token), which only this command turns on;
// production roles never fall back to them.
import { createHash } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { ConfigError, loadConfig, requireFor, type Config } from '../config.ts';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../dev/embedded-postgres.ts';
import { EXIT } from '../errors.ts';
import { startFakeGateway, type FakeGateway } from '../gateway/fake-gateway.ts';
import { exitCodeFor, runUntilSignalled, type Running } from '../lifecycle.ts';
import { createLogger, type Logger } from '../log.ts';
import { DEV_DATA_DIR } from '../paths.ts';
import { fakeGatewayOptionsFrom } from './fake-gateway.ts';
import { startAll } from './all.ts';
import { runMigrate } from './migrate.ts';
import { runDemo } from '../dev/demo.ts';

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

/**
 * A database named by DATABASE_URL may be a real one: the fake gateway would record its recurrences as charged
 * (no money moved) or put them on hold. Without GATEWAY_URL, dev uses it only when told so (--fake-gateway).
 */
function refuseFakeGatewayOnNamedDatabase(config: Config, args: string[]): void {
  const unknown = args.filter((arg) => arg !== '--fake-gateway');
  if (unknown.length > 0)
    throw new ConfigError([`unknown option ${unknown.join(' ')} (dev takes --fake-gateway)`]);
  if (config.databaseUrl === undefined || config.gateway.url !== undefined || args.includes('--fake-gateway'))
    return;
  throw new ConfigError([
    'DATABASE_URL is set and GATEWAY_URL is not: dev would charge that database through the fake gateway. ' +
      'Set GATEWAY_URL, unset DATABASE_URL (embedded database), or pass --fake-gateway (npm start -- --fake-gateway) ' +
      'if it is a development database',
  ]);
}

/** A database URL for the log: its password masked. */
function withoutPassword(url: string): string {
  const parsed = new URL(url);
  if (parsed.password !== '') parsed.password = '***';
  return parsed.toString();
}

export async function runDev(args: string[]): Promise<number> {
  let config;
  try {
    config = loadConfig(
      { LOG_FORMAT: process.stdout.isTTY ? 'pretty' : 'json', ...process.env },
      { development: true },
    );
    requireFor(config, ['adminToken']);
    refuseFakeGatewayOnNamedDatabase(config, args);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`);
      return EXIT.usage;
    }
    throw error;
  }
  const log = createLogger({ level: config.log.level, format: config.log.format, role: 'dev' });

  try {
    return await runUntilSignalled(log, async (signal) => {
      let embedded: EmbeddedPostgres | undefined;
      let fake: FakeGateway | undefined;
      let databaseUrl = config.databaseUrl;
      let runConfig: Config = config;
      try {
        if (databaseUrl === undefined) {
          const dataDir = embeddedDataDir();
          log.info({ dataDir }, 'DATABASE_URL not set: starting embedded PostgreSQL');
          embedded = await startEmbeddedPostgres({ dataDir, onLog: (line) => log.debug({ postgres: line }) });
          await embedded.createDatabase('recorrencias');
          databaseUrl = embedded.url('recorrencias');
          log.info(
            { databaseUrl: withoutPassword(databaseUrl), pid: embedded.pid() },
            'embedded PostgreSQL ready',
          );
        }
        if (config.gateway.url === undefined) {
          fake = await startDevGateway(log);
          runConfig = { ...config, gateway: { ...config.gateway, url: fake.url } };
        }
        await runMigrate({ config: runConfig, log, databaseUrl, signal });
        const all = await startAll({ config: runConfig, log, databaseUrl, signal });
        try {
          await runDemo({ config: runConfig, log, databaseUrl, signal });
        } catch (error) {
          // Stopped (or failed) during the demo: the roles stop in order before their database does.
          await all.stop();
          throw error;
        }
        log.info(
          { admin: all.adminUrl, database: withoutPassword(databaseUrl) },
          `recorrencias is running; admin server at ${all.adminUrl} (Ctrl-C stops everything)`,
        );
        const running: Running = {
          stop: async () => {
            await all.stop();
            await fake?.close();
            if (embedded !== undefined) {
              await embedded.stop();
              log.info('embedded PostgreSQL stopped');
            }
          },
        };
        return running;
      } catch (error) {
        await fake?.close();
        await embedded?.stop();
        throw error;
      }
    });
  } catch (error) {
    return exitCodeFor(log, error);
  }
}

/** The fake gateway, in this process, with a 10% decline mix so the demo shows every outcome. */
async function startDevGateway(log: Logger): Promise<FakeGateway> {
  const options = fakeGatewayOptionsFrom({
    FAKE_GATEWAY_PORT: '0',
    FAKE_GATEWAY_DECLINE_RATE: '0.1',
    ...process.env,
  });
  const fake = await startFakeGateway({ ...options, log: log.child({ component: 'fake-gateway' }) });
  log.info(
    { url: fake.url, declineRate: fake.settings().declineRate },
    'GATEWAY_URL not set: using the fake gateway',
  );
  return fake;
}
