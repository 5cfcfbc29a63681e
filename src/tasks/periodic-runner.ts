// Runs a periodic task for one business date: makes sure only one run per (task, date) happens at a time and
// that a succeeded run is not repeated unless forced, records the run, and enforces the soft time limit (a
// warning) beside pg-boss's hard limit (the job's expiry, which aborts `signal`); a run whose lock's connection
// ends is aborted too (run-lock-watch.ts).
import { setTimeout as delay } from 'node:timers/promises';
import type { JobWithMetadata } from 'pg-boss';
import type { CommonQueryMethods } from 'slonik';
import type { IsoDate } from '../domain/dates.ts';
import {
  findLatestTaskRun,
  insertTaskRun,
  markInterruptedTaskRuns,
  markTaskRunFailed,
  markTaskRunSucceeded,
  tryLockTaskRun,
  unlockTaskRun,
  type TaskRun,
} from '../db/task-runs.ts';
import type { Logger } from '../log.ts';
import { StopRequested } from '../lifecycle.ts';
import { jobOccurrence } from './job-business-date.ts';
import { watchRunLock, type RunLockWatch } from './run-lock-watch.ts';
import { periodicTaskPayload, type PeriodicTask, type TaskCounts, type TaskDeps } from './task.ts';

export type PeriodicOutcome =
  | { status: 'succeeded'; runId: number; date: IsoDate; counts: TaskCounts }
  | { status: 'skipped'; reason: 'already_succeeded' | 'run_in_progress'; date: IsoDate; runId?: number };

export class InvalidPayloadError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvalidPayloadError';
  }
}

/**
 * Reads the job's payload; throws InvalidPayloadError (a permanent failure) when it is malformed. A cron-fired
 * job's date comes from the schedule the scheduler stored (its cron and time zone), not from this worker's
 * CRON_* settings, which may differ; this worker's own only when no schedule is stored (the task paused since).
 */
export async function jobBusinessDate(
  task: PeriodicTask,
  deps: TaskDeps,
  job: Pick<JobWithMetadata<unknown>, 'id' | 'data' | 'createdOn'>,
): Promise<{ date: IsoDate; force: boolean }> {
  const parsed = periodicTaskPayload.safeParse(job.data ?? {});
  if (!parsed.success) {
    throw new InvalidPayloadError(
      `invalid payload for ${task.name}: ${parsed.error.issues.map((i) => `${i.path.join('.') || 'payload'}: ${i.message}`).join('; ')}`,
    );
  }
  const force = parsed.data.force ?? false;
  if (parsed.data.date !== undefined) return { date: parsed.data.date, force };
  const stored = await deps.boss.getSchedule(task.name);
  const cron = stored?.cron ?? deps.config.cron[task.name];
  const timeZone = stored?.timezone ?? deps.config.timeZone;
  const { date, early } = jobOccurrence(cron, timeZone, job.createdOn);
  if (early)
    deps.log.warn(
      { task: task.name, jobId: job.id, createdOn: job.createdOn, businessDate: date },
      "tick sent before its occurrence (the scheduler's clock is ahead of the database's): run for the occurrence's date",
    );
  return { date, force };
}

export type PeriodicRunRequest = {
  date: IsoDate;
  force: boolean;
  /** The pg-boss job carrying the run, or null for a run from the command line. */
  jobId: string | null;
  attempt: number;
  signal: AbortSignal;
};

export async function runPeriodicTask(
  task: PeriodicTask,
  deps: TaskDeps,
  request: PeriodicRunRequest,
): Promise<PeriodicOutcome> {
  const log = deps.log.child({ task: task.name, jobId: request.jobId, businessDate: request.date });
  // A transaction on a dedicated connection holds the (task, date) lock for the whole run (the run's own
  // writes commit on other connections); if this process dies the connection ends and the lock with it, so
  // the job's retry can take over. The other way round, a run whose lock connection ends stops.
  const locked: { run?: Promise<PeriodicOutcome>; released: boolean } = { released: false };
  try {
    return await deps.pool.connect(async (session) => {
      locked.run = runHoldingLock(task, deps, request, log, session, locked);
      const outcome = await locked.run;
      // slonik puts a connection back in the pool as it is when its routine succeeds: one whose lock
      // transaction did not end with a COMMIT (the watch gave up on it, or the COMMIT failed) must not be
      // reused with that transaction (and the lock) possibly still open, so failing here has it destroyed.
      if (!locked.released) throw new LockConnectionDiscarded();
      return outcome;
    });
  } catch (error) {
    // slonik's connect also rejects as soon as its connection reports an error, while the routine goes on:
    // the outcome is the run's own (stopped by the lock watch, or finished), not the connection's error.
    if (locked.run === undefined) {
      log.error({ err: error }, 'task run could not start: no connection for its lock');
      throw error;
    }
    const run = await locked.run.then(
      (outcome) => ({ outcome }),
      (runError: unknown) => ({ runError }),
    );
    // The connection's own error says why it ended (the run's record only says it did).
    if (!(error instanceof LockConnectionDiscarded) && (!('runError' in run) || run.runError !== error)) {
      log.error({ err: error }, 'the connection holding the run lock failed during the run');
    }
    if ('runError' in run) throw run.runError;
    return run.outcome;
  }
}

export class RunLockHeldError extends Error {
  constructor(
    task: string,
    date: IsoDate,
    attempt: number,
    holder: 'earlier run' | 'command line' | 'unrecorded run',
  ) {
    super(
      holder === 'command line'
        ? `a command-line run of ${task} for ${date} holds its lock, and has no retry of its own: this job retries after it`
        : holder === 'unrecorded run'
          ? `a run of ${task} for ${date} holds its lock and has no record yet (it may be a command-line run, which has no retry of its own): this job retries after it`
          : `another run of ${task} for ${date} holds its lock while this job retries (attempt ${attempt}): retrying later`,
    );
    this.name = 'RunLockHeldError';
  }
}

/** Thrown out of the connection's routine so that slonik destroys the connection instead of reusing it. */
class LockConnectionDiscarded extends Error {
  constructor() {
    super('the run lock connection did not end its transaction cleanly: discarded');
    this.name = 'LockConnectionDiscarded';
  }
}

async function runHoldingLock(
  task: PeriodicTask,
  deps: TaskDeps,
  request: PeriodicRunRequest,
  log: Logger,
  session: CommonQueryMethods,
  lock: { released: boolean },
): Promise<PeriodicOutcome> {
  const { date, force } = request;
  // Failures before the run has its row in execucoes_tarefas are only in this log (and the job's output).
  const couldNotStart = (error: unknown): never => {
    log.error({ err: error }, 'task run could not start');
    throw error;
  };
  const lockOrHolder = await lockOrFindHolder(session, deps, task, request, log).catch(couldNotStart);
  if (lockOrHolder !== 'acquired') {
    lock.released = true; // tryLockTaskRun ended its transaction
    // A job beside a command-line run: if that run fails, nothing retries it, so the job must not count the
    // date as handled; it retries (within TASK_RETRY_LIMIT), and then finds the date done or runs it.
    const { holder } = lockOrHolder;
    const commandLine = holder !== null && holder.job_id === null;
    // The holder takes the lock, then records its run: in between, who holds it is unknown, and it may be a
    // command-line run. Only a job run (which retries on its own) lets this job count the date as handled.
    const unrecorded = request.jobId !== null && holder === null;
    // A job that already tried and failed: the run holding the lock may be its own previous attempt, cut off
    // from the database, whose connection the server has not dropped yet; skipping would leave the date unrun,
    // so the job fails and retries later (by then that run has ended, or succeeded).
    if (commandLine || unrecorded || request.attempt > 1) {
      const error = new RunLockHeldError(
        task.name,
        date,
        request.attempt,
        commandLine ? 'command line' : unrecorded ? 'unrecorded run' : 'earlier run',
      );
      log.warn({ attempt: request.attempt, holderRunId: holder?.id }, error.message);
      throw error;
    }
    log.info('another run for this task and date is in progress: nothing to do');
    return { status: 'skipped', reason: 'run_in_progress', date };
  }
  const watch = watchRunLock(session, deps.config.tasks.lockCheckSeconds * 1000, log);
  const signal = AbortSignal.any([request.signal, watch.lost]);
  try {
    // Stopped before it began (a signal while it connected or waited for the lock): no run to record.
    signal.throwIfAborted();
    const begun = await beginRun(deps, task, request, log).catch(couldNotStart);
    if ('skipped' in begun) return begun.skipped;
    const { run } = begun;
    const runLog = log.child({ runId: run.id });
    const started = Date.now();
    runLog.info({ forced: force, attempt: run.tentativa }, 'task run started');
    const softLimitMs = deps.config.tasks.softLimitSeconds * 1000;
    const softTimer = setTimeout(
      () =>
        runLog.warn(
          { softLimitSeconds: deps.config.tasks.softLimitSeconds },
          'task run passed its soft time limit',
        ),
      softLimitMs,
    );
    const progress: TaskCounts = {};
    try {
      const counts = await task.run({ ...deps, log: runLog, date, force, runId: run.id, signal, progress });
      await markTaskRunSucceeded(deps.pool, run.id, counts);
      runLog.info({ counts, ms: Date.now() - started }, 'task run succeeded');
      return { status: 'succeeded', runId: run.id, date, counts };
    } catch (error) {
      const fields = { ms: Date.now() - started, counts: progress };
      // Stopped on purpose (SIGTERM or Ctrl-C on a command-line run): not a crash, so no error and no stack;
      // the date is not done, though, and the message says so.
      if (error instanceof StopRequested)
        runLog.warn(
          { ...fields, reason: error.message },
          'task run stopped before it finished: run it again',
        );
      else runLog.error({ err: error, ...fields }, 'task run failed');
      await markTaskRunFailed(deps.pool, run.id, (error as Error).message, progress).catch(
        (recordError: unknown) => runLog.error({ err: recordError }, 'could not record the failed run'),
      );
      throw error;
    } finally {
      clearTimeout(softTimer);
    }
  } finally {
    await watch.stop();
    lock.released = await releaseRunLock(session, watch, log);
  }
}

/** How long a job that finds the lock held by a run with no record waits for that run to record or let go. */
const UNRECORDED_HOLDER_WAIT_MS = 1_000;
const UNRECORDED_HOLDER_POLL_MS = 50;

/**
 * Takes the (task, date) lock on `session`, or finds the run holding it (for a job; the command line does not
 * look). A holder with no record yet is, most often, a run about to record itself, or one that found the date
 * already done or just recorded its success and is letting go: within a second it has a record or has let go,
 * and this job decides on that instead of failing on an unknown holder (a retry, and a spurious failed job if
 * its retries ran out meanwhile).
 */
async function lockOrFindHolder(
  session: CommonQueryMethods,
  deps: TaskDeps,
  task: PeriodicTask,
  request: PeriodicRunRequest,
  log: Logger,
): Promise<'acquired' | { holder: TaskRun | null }> {
  const deadline = Date.now() + UNRECORDED_HOLDER_WAIT_MS;
  for (let waited = false; ; waited = true) {
    if (await tryLockTaskRun(session, task.name, request.date)) return 'acquired';
    if (request.jobId === null) return { holder: null };
    const holder = await findLatestTaskRun(deps.pool, task.name, request.date, 'executando');
    if (holder !== null || Date.now() >= deadline) return { holder };
    if (!waited) log.debug('the run holding the lock has no record yet: waiting for it to record or let go');
    await delay(UNRECORDED_HOLDER_POLL_MS);
  }
}

/**
 * Under the lock: a date that already succeeded is not run again unless forced; otherwise the date's
 * interrupted runs are marked as such and the new run is recorded.
 */
async function beginRun(
  deps: TaskDeps,
  task: PeriodicTask,
  request: PeriodicRunRequest,
  log: Logger,
): Promise<{ skipped: PeriodicOutcome } | { run: TaskRun }> {
  const { date } = request;
  if (!request.force) {
    const done = await findLatestTaskRun(deps.pool, task.name, date, 'sucesso');
    if (done !== null) {
      log.info({ runId: done.id }, 'already succeeded for this date: nothing to do (force to rerun)');
      return { skipped: { status: 'skipped', reason: 'already_succeeded', date, runId: done.id } };
    }
  }
  const interrupted = await markInterruptedTaskRuns(deps.pool, task.name, date);
  if (interrupted > 0) log.warn({ interrupted }, 'previous run was interrupted: redoing it');
  const run = await insertTaskRun(deps.pool, {
    task: task.name,
    date,
    forced: request.force,
    jobId: request.jobId,
    attempt: request.attempt,
  });
  return { run };
}

/**
 * Ends the lock's transaction; returns whether it did. When its connection has already ended, so has the
 * lock: that is logged, and the run's own outcome (recorded before this) stands rather than being replaced by
 * the connection error.
 */
async function releaseRunLock(
  session: CommonQueryMethods,
  watch: RunLockWatch,
  log: Logger,
): Promise<boolean> {
  if (watch.lost.aborted) return false;
  try {
    await unlockTaskRun(session);
    return true;
  } catch (error) {
    log.error({ err: error }, 'the run lock had already ended with its connection');
    return false;
  }
}
