// Process lifecycle: a long-running role starts, waits for SIGTERM/SIGINT and stops in order within a bound;
// a one-shot command that can stop midway (a task run) is aborted by them. A second signal forces the exit
// (an operator who presses Ctrl-C twice means it).
import { ConfigError } from './config.ts';
import { isDatabaseUnavailable, isTooManyConnections } from './db/unavailable.ts';
import { EXIT, isAppError } from './errors.ts';
import type { Logger } from './log.ts';

export type Running = { stop(): Promise<void> };

/**
 * Wires SIGTERM/SIGINT to `controller`: the first aborts it with a StopRequested; a second one, sent a second
 * or more later, forces the exit. Returns the function that unwires them.
 */
function abortOnSignals(log: Logger, controller: AbortController, what: string): () => void {
  let firstSignalAt: number | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    if (firstSignalAt !== undefined) {
      // Under `npm start` one Ctrl-C reaches us twice within milliseconds (from the terminal and forwarded
      // by npm); only a signal sent later is a second, deliberate one.
      if (Date.now() - firstSignalAt < 1_000) return;
      log.warn({ signal }, 'second signal received: forcing exit');
      process.exit(EXIT.forced);
    }
    firstSignalAt = Date.now();
    log.info({ signal }, what);
    controller.abort(new StopRequested(signal));
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  return () => {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
  };
}

/** Why a signal-aborted piece of work stopped (recorded as a stopped task run's error). */
export class StopRequested extends Error {
  constructor(signal: NodeJS.Signals) {
    super(`stopped by ${signal}`);
    this.name = 'StopRequested';
  }
}

/**
 * Runs `start` and keeps the process alive until a signal arrives, then awaits `stop()`. Resolves with the
 * exit code. A signal received while still starting aborts `signal`, so a role waiting for the database
 * gives up promptly.
 */
export async function runUntilSignalled(
  log: Logger,
  start: (signal: AbortSignal) => Promise<Running>,
): Promise<number> {
  const controller = new AbortController();
  abortOnSignals(log, controller, 'stop requested: finishing in-flight work');
  const stopRequested = new Promise<void>((resolve) =>
    controller.signal.addEventListener('abort', () => resolve(), { once: true }),
  );

  let running: Running;
  try {
    running = await start(controller.signal);
  } catch (error) {
    if (controller.signal.aborted) {
      log.info('stopped before start-up completed');
      return EXIT.ok;
    }
    throw error;
  }
  await stopRequested;
  const started = Date.now();
  await running.stop();
  log.info({ ms: Date.now() - started }, 'stopped');
  return EXIT.ok;
}

/**
 * Runs a one-shot command whose work stops at its next safe point when `signal` aborts (a task run): SIGTERM
 * and SIGINT abort it, so the work ends on its own terms and records how (a task run as failed, `stopped by
 * SIGTERM`) instead of dying mid-run with its record still saying it runs. A second signal forces the exit.
 */
export async function runStoppable<T>(log: Logger, work: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  const unwire = abortOnSignals(log, controller, 'stop requested: stopping at the next safe point');
  try {
    return await work(controller.signal);
  } finally {
    unwire();
  }
}

/** Stops parts in order (the reverse of how they were started), logging and continuing past failures. */
export function stopAll(log: Logger, parts: Array<[string, Running]>): Running {
  let stopping: Promise<void> | undefined;
  return {
    stop: () => {
      stopping ??= (async () => {
        for (const [name, part] of [...parts].reverse()) {
          try {
            await part.stop();
          } catch (error) {
            log.error({ err: error, part: name }, 'error while stopping');
          }
        }
      })();
      return stopping;
    },
  };
}

/**
 * Makes a crash (an exception or a promise rejection nothing handled) end the process as Node would, with exit
 * code 1, but after one structured fatal line, redacted like every other, instead of Node's plain-text trace.
 */
export function logCrashes(log: Logger): void {
  const crash = (what: string) => (error: unknown) => {
    log.fatal({ err: error }, `${what}: the process exits`);
    process.exit(EXIT.failure);
  };
  process.on('uncaughtException', crash('uncaught exception'));
  process.on('unhandledRejection', crash('unhandled promise rejection'));
}

/** node:util parseArgs refuses an unknown or malformed option with these codes: a usage error, not a failure. */
function isBadOption(error: unknown): error is Error {
  return error instanceof Error && String((error as { code?: unknown }).code).startsWith('ERR_PARSE_ARGS_');
}

/** Logs why a command failed and picks the exit code that says so (see the README's exit codes). */
export function exitCodeFor(log: Logger, error: unknown): number {
  if (isAppError(error, 'NOT_MIGRATED')) {
    log.fatal({ code: error.code }, error.message);
    return EXIT.notMigrated;
  }
  if (error instanceof ConfigError || isAppError(error, 'INVALID_INPUT') || isBadOption(error)) {
    log.fatal({ code: 'INVALID_INPUT' }, error.message);
    process.stderr.write(`${error.message}\n`);
    return EXIT.usage;
  }
  if (isAppError(error, 'CONFLICT') || isAppError(error, 'NOT_FOUND')) {
    // Refused, not crashed: the state the command found is the message, with no stack to read past.
    log.error({ code: error.code, ...error.details }, error.message);
    process.stderr.write(`${error.message}\n`);
    return EXIT.failure;
  }
  if (error instanceof StopRequested) {
    // Asked to stop, not crashed: what stopped is recorded (a task run as failed with this message).
    log.warn({ code: 'STOPPED' }, `${error.message} before it finished`);
    process.stderr.write(`${error.message} before it finished\n`);
    return EXIT.failure;
  }
  log.fatal({ err: error }, 'command failed');
  return EXIT.failure;
}

/**
 * Runs `start` again (with capped backoff, logging each time) while it fails because the database went away
 * during start-up: a role that passed the initial wait must not die if Postgres restarts a moment later.
 * Any other error, or a stop request, ends the retries. `start` must clean up after itself when it fails.
 */
export async function retryWhileDatabaseUnavailable<T>(
  log: Logger,
  signal: AbortSignal,
  start: () => Promise<T>,
): Promise<T> {
  let delayMs = 500;
  for (let attempt = 1; ; attempt++) {
    try {
      return await start();
    } catch (error) {
      if (!isDatabaseUnavailable(error) || signal.aborted) throw error;
      log.warn(
        { attempt, retryInMs: delayMs, err: { message: (error as Error).message } },
        isTooManyConnections(error)
          ? 'database refused more connections during start-up, waiting'
          : 'database unreachable during start-up, waiting',
      );
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, delayMs);
        signal.addEventListener('abort', () => (clearTimeout(timer), resolve()), { once: true });
      });
      signal.throwIfAborted();
      delayMs = Math.min(10_000, delayMs * 2);
    }
  }
}
