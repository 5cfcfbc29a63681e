// The command line: `node dist/main.js <command>`. Loads .env and the configuration, builds the logger for
// the role, checks what the role cannot run without, and runs it until it is told to stop.
import { existsSync } from 'node:fs';
import { ConfigError, loadConfig, requireFor, type Config, type Need } from './config.ts';
import { EXIT } from './errors.ts';
import {
  exitCodeFor,
  logCrashes,
  retryWhileDatabaseUnavailable,
  runStoppable,
  runUntilSignalled,
  type Running,
} from './lifecycle.ts';
import { createLogger, type Logger } from './log.ts';
import type { RoleContext } from './roles/context.ts';

const USAGE = `usage: node dist/main.js <command>

roles (one process each; any number may run at once):
  migrate      apply sql/ migrations and pg-boss's schema, create the queues, exit
  worker       run the task and charge handlers
  scheduler    register the periodic schedules and run the cron timer
  admin        run the admin HTTP server
  all          worker + scheduler + admin in one process

operations:
  check [--json]
               the deployment checklist: database, migrations, tasks, schedules, dry runs, statistics
  inspect active|scheduled|registered [--json]
               the \`celery inspect\` equivalents
  stats [--date YYYY-MM-DD] [--json]
               recurrence counts for the business date
  run <task> [--date YYYY-MM-DD [--allow-future-date]] [--force] [--dry-run [--csv]]
               run a periodic task now, in this process, and print its result; --dry-run prints what it
               would do (for processar_recorrencias_do_dia, the list of charges) and runs nothing; Ctrl-C
               stops it at its next page, recorded as failed (exit 1)
  import --file export.(csv|jsonl) [--cutover YYYY-MM-DD [--replace-cutover]] [--dry-run] [--map ours=theirs,...]
               [--errors FILE]
               import the old system's recurrences (idempotent, by id_legado)
  seed --count N [--date YYYY-MM-DD] [--sellers S] [--seed X] [--demo]
               insert N realistic recurrences due on the date (demo, benchmark; in production only with --demo)
  purge-archive [--older-than-days N] [--dry-run]
               delete recurrences archived longer ago than ARCHIVE_RETENTION_DAYS

development:
  dev          what \`npm start\` runs: embedded PostgreSQL unless DATABASE_URL is set, a fake gateway unless
               GATEWAY_URL is set, migrate, a demo data set, then all roles
  fake-gateway the fake payment gateway (FAKE_GATEWAY_* variables), for development, tests and benchmarks
`;

type Command = {
  needs: readonly Need[];
  longRunning: boolean;
  /** One-shot commands print their result on stdout; their logs go to stderr. */
  printsResult?: boolean;
  /**
   * The command's work checks its signal and stops at a safe point: SIGTERM/SIGINT abort it (a second one
   * forces the exit). The other one-shot commands keep Node's default, a signal ends them at once, which is
   * safe as each of their writes is one transaction.
   */
  stopsOnSignal?: boolean;
  run: (ctx: RoleContext, args: string[]) => Promise<Running | number>;
};

const COMMANDS: Record<string, Command> = {
  migrate: {
    needs: ['database'],
    longRunning: false,
    run: async (ctx) => {
      const { runMigrate } = await import('./roles/migrate.ts');
      await runMigrate(ctx);
      return EXIT.ok;
    },
  },
  worker: {
    needs: ['database', 'gateway'],
    longRunning: true,
    run: async (ctx) => (await import('./roles/worker.ts')).startWorker(ctx),
  },
  scheduler: {
    needs: ['database'],
    longRunning: true,
    run: async (ctx) => (await import('./roles/scheduler.ts')).startScheduler(ctx),
  },
  admin: {
    needs: ['database', 'adminToken'],
    longRunning: true,
    run: async (ctx) => (await import('./roles/admin.ts')).startAdmin(ctx),
  },
  all: {
    needs: ['database', 'gateway', 'adminToken'],
    longRunning: true,
    run: async (ctx) => (await import('./roles/all.ts')).startAll(ctx),
  },
  'fake-gateway': {
    needs: [],
    longRunning: true,
    run: async (ctx) => (await import('./roles/fake-gateway.ts')).startFakeGatewayRole(process.env, ctx.log),
  },
  run: {
    needs: ['database'],
    longRunning: false,
    printsResult: true,
    // A task run records itself; killed midway, its record would say it still runs.
    stopsOnSignal: true,
    run: async (ctx, args) => (await import('./commands/run-task.ts')).runTaskCommand(ctx, args),
  },
  import: {
    needs: ['database'],
    longRunning: false,
    printsResult: true,
    run: async (ctx, args) => (await import('./commands/import.ts')).importCommand(ctx, args),
  },
  seed: {
    needs: ['database'],
    longRunning: false,
    printsResult: true,
    run: async (ctx, args) => (await import('./commands/seed.ts')).seedCommand(ctx, args),
  },
  inspect: {
    needs: ['database'],
    longRunning: false,
    printsResult: true,
    run: async (ctx, args) => (await import('./commands/inspect.ts')).inspectCommand(ctx, args),
  },
  stats: {
    needs: ['database'],
    longRunning: false,
    printsResult: true,
    run: async (ctx, args) => (await import('./commands/inspect.ts')).statsCommand(ctx, args),
  },
  check: {
    needs: ['database'],
    longRunning: false,
    printsResult: true,
    run: async (ctx, args) => (await import('./commands/check.ts')).checkCommand(ctx, args),
  },
  'purge-archive': {
    needs: ['database'],
    longRunning: false,
    printsResult: true,
    run: async (ctx, args) => (await import('./commands/purge-archive.ts')).purgeArchiveCommand(ctx, args),
  },
};

function loadDotEnv(): void {
  // Values already in the environment win over .env (loadEnvFile never overwrites).
  if (existsSync('.env')) process.loadEnvFile('.env');
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...args] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(USAGE);
    return name === undefined ? EXIT.usage : EXIT.ok;
  }
  loadDotEnv();
  if (name === 'dev') {
    const { runDev } = await import('./roles/dev.ts');
    return runDev(args);
  }
  const command = COMMANDS[name];
  if (command === undefined) {
    process.stderr.write(`unknown command: ${name}\n\n${USAGE}`);
    return EXIT.usage;
  }
  let config: Config;
  try {
    config = loadConfig(process.env);
    requireFor(config, command.needs);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`);
      return EXIT.usage;
    }
    throw error;
  }
  const log = createLogger({
    level: config.log.level,
    format: config.log.format,
    role: name,
    ...(command.printsResult === true ? { destination: process.stderr } : {}),
  });
  logCrashes(log);
  return runCommand(command, config, log, config.databaseUrl ?? '', args);
}

/** Runs a command against `databaseUrl` (the configured DATABASE_URL). */
export async function runCommand(
  command: Command,
  config: Config,
  log: Logger,
  databaseUrl: string,
  args: string[],
): Promise<number> {
  try {
    if (!command.longRunning) {
      const once = async (signal: AbortSignal) => {
        const run = () => command.run({ config, log, databaseUrl, signal }, args);
        // Only migrate is safe to repeat from scratch (each file is one transaction; applied ones are skipped).
        return command === COMMANDS.migrate ? retryWhileDatabaseUnavailable(log, signal, run) : run();
      };
      const result =
        command.stopsOnSignal === true
          ? await runStoppable(log, once)
          : await once(new AbortController().signal);
      return typeof result === 'number' ? result : EXIT.ok;
    }
    return await runUntilSignalled(log, async (signal) => {
      // A role that passed the first wait still survives Postgres going away while it starts.
      const result = await retryWhileDatabaseUnavailable(log, signal, () =>
        command.run({ config, log, databaseUrl, signal }, args),
      );
      if (typeof result === 'number') throw new Error('a long-running command must return a Running handle');
      return result;
    });
  } catch (error) {
    return exitCodeFor(log, error);
  }
}
