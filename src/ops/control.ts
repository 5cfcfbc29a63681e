// Operator actions on tasks and queues, shared by the admin API and the command line: run a task now, pause and
// resume a queue across the cluster, retry a failed or dead-lettered job (or the whole charge dead-letter
// queue). Each one writes an audit row saying who did it. Actions on a recurrence (take it off hold, pause,
// cancel) are in recurrence-changes.ts.
import { randomUUID } from 'node:crypto';
import type { CommonQueryMethods } from 'slonik';
import {
  deletePause,
  describePause,
  extendQueuedRetention,
  findPause,
  insertAudit,
  insertPause,
  lockPausesAndSchedules,
} from '../db/pauses.ts';
import { databaseNow, findJob } from '../db/jobs.ts';
import { findLatestTaskRun, type TaskRun } from '../db/task-runs.ts';
import { businessDate, type IsoDate } from '../domain/dates.ts';
import { stableUuid } from '../domain/identifiers.ts';
import { AppError } from '../errors.ts';
import { bossDb } from '../queue/boss-executor.ts';
import { CHARGE_DEAD_LETTER_QUEUE, isPeriodicTask, type PeriodicTaskName } from '../queue/task-names.ts';
import { findInCatalog } from './catalog.ts';
import type { OpsDeps } from './deps.ts';
import type { Actor } from './actor.ts';

export type RunRequest = { date?: IsoDate; force?: boolean; allowFutureDate?: boolean };
export type RunAnswer =
  | { status: 'queued'; jobId: string; task: string; date: IsoDate; force: boolean }
  | { status: 'already_queued'; jobId: string; task: string; date: IsoDate }
  | { status: 'already_succeeded'; task: string; date: IsoDate; run: TaskRun };

/** Job states after which the job will not run again. */
const FINISHED = new Set(['completed', 'failed', 'cancelled']);

export function requirePeriodicTask(name: string): PeriodicTaskName {
  if (!isPeriodicTask(name)) throw new AppError('NOT_FOUND', `unknown task: ${name}`);
  return name;
}

/**
 * Refuses a run for a business date after `today` unless asked for explicitly: a run charges now, so a run
 * for a later date would charge now the cycles due by then (a mistyped date, say). Tests, rehearsals and the
 * benchmark run seeded dates on purpose. `allowWith` names the caller's way to ask for it.
 */
export function refuseFutureRun(
  date: IsoDate,
  today: IsoDate,
  allowFutureDate: boolean | undefined,
  allowWith: string,
): void {
  if (date > today && allowFutureDate !== true) {
    throw new AppError(
      'INVALID_INPUT',
      `date ${date} is after today's business date (${today}): a run charges now what is due by its date; to run it anyway, add ${allowWith}`,
    );
  }
}

/**
 * Refuses to run a paused task. Through the API its job would wait, answered as queued, and run whenever
 * the task was resumed, for a date chosen then; from the command line it would run at once, past the
 * pause an operator set to stop it. Either way the pause is lifted first, on purpose.
 */
export async function refusePausedTask(db: CommonQueryMethods, task: PeriodicTaskName): Promise<void> {
  const pause = await findPause(db, task);
  if (pause === null) return;
  const reason = pause.motivo === null ? '' : `: ${pause.motivo}`;
  throw new AppError(
    'CONFLICT',
    `task ${task} is paused (by ${pause.pausada_por} since ${pause.pausada_em.toISOString()}${reason}); resume it first (POST /tasks/${task}/resume)`,
    { details: { paused: describePause(pause) } },
  );
}

/**
 * Enqueues a run of `task` for `date` (default: today's business date; a later one only when asked for, see
 * refuseFutureRun). A date that already succeeded is answered with that run, and a run already queued for it
 * with that job, unless forced. A paused task is refused (refusePausedTask).
 */
export async function runTask(
  deps: OpsDeps,
  who: Actor,
  name: string,
  request: RunRequest,
): Promise<RunAnswer> {
  const task = requirePeriodicTask(name);
  const today = businessDate(deps.now(), deps.config.timeZone);
  const date = request.date ?? today;
  refuseFutureRun(date, today, request.allowFutureDate, '"allowFutureDate": true');
  await refusePausedTask(deps.pool, task);
  const force = request.force ?? false;
  if (!force) {
    const run = await findLatestTaskRun(deps.pool, task, date, 'sucesso');
    if (run !== null) return { status: 'already_succeeded', task, date, run };
  }
  // One job per (task, date) unless forced: a second click finds the first job instead of adding one. Once
  // that job has finished (failed, say, and the cause is fixed) a new click runs the date again.
  const stable = stableUuid(`manual:${task}:${date}`);
  let id = force ? randomUUID() : stable;
  let sent = await deps.boss.send(task, { date, force }, { id });
  if (sent === null && FINISHED.has((await findJob(deps.pool, stable))?.state ?? '')) {
    id = randomUUID();
    sent = await deps.boss.send(task, { date, force }, { id });
  }
  await insertAudit(deps.pool, {
    who,
    action: 'run_task',
    target: task,
    details: { date, force, jobId: id, duplicate: sent === null },
  });
  if (sent === null) return { status: 'already_queued', jobId: id, task, date };
  return { status: 'queued', jobId: sent, task, date, force };
}

export async function pauseQueue(
  deps: OpsDeps,
  who: Actor,
  name: string,
  reason: string | null,
): Promise<{ queue: string; changed: boolean }> {
  const entry = findInCatalog(name);
  if (entry === undefined) throw new AppError('NOT_FOUND', `unknown task or queue: ${name}`);
  if (!entry.pausable) throw new AppError('CONFLICT', `${name} cannot be paused`);
  // The pause and its audit row commit together: workers stop on the row within a second, so it must never
  // exist without saying who paused. A task's schedule goes in the same transaction, rather than at the
  // schedulers' next sync: ticks of a paused task are skipped, not queued.
  const changed = await deps.pool.transaction(async (tx) => {
    // Only a task has a schedule: the charge queue's emergency stop never waits for a scheduler's pass.
    if (isPeriodicTask(name)) await lockPausesAndSchedules(tx);
    const inserted = await insertPause(tx, name, who.name, reason);
    await insertAudit(tx, { who, action: 'pause', target: name, details: { reason, changed: inserted } });
    if (isPeriodicTask(name)) await deps.boss.unschedule(name, '', { db: bossDb(tx) });
    return inserted;
  });
  deps.log.warn({ queue: name, by: who, reason }, 'queue paused');
  // Repeated by a retried call (idempotent).
  await extendQueuedRetention(deps.pool, name);
  return { queue: name, changed };
}

export async function resumeQueue(
  deps: OpsDeps,
  who: Actor,
  name: string,
): Promise<{ queue: string; changed: boolean }> {
  const entry = findInCatalog(name);
  if (entry === undefined) throw new AppError('NOT_FOUND', `unknown task or queue: ${name}`);
  const changed = await deps.pool.transaction(async (tx) => {
    if (isPeriodicTask(name)) await lockPausesAndSchedules(tx);
    const deleted = await deletePause(tx, name);
    await insertAudit(tx, { who, action: 'resume', target: name, details: { changed: deleted } });
    if (isPeriodicTask(name)) {
      // A fresh schedule row: the ticks that fell during the pause are not caught up.
      await deps.boss.schedule(name, deps.config.cron[name], null, {
        tz: deps.config.timeZone,
        missed: 'once',
        db: bossDb(tx),
      });
    }
    return deleted;
  });
  deps.log.warn({ queue: name, by: who }, 'queue resumed');
  return { queue: name, changed };
}

export async function retryJob(
  deps: OpsDeps,
  who: Actor,
  id: string,
): Promise<{ jobId: string; queue: string; action: string }> {
  const job = await findJob(deps.pool, id);
  if (job === null) throw new AppError('NOT_FOUND', `no job ${id}`);
  if (job.queue === CHARGE_DEAD_LETTER_QUEUE) {
    // Back to the queue it came from, where a worker resumes its pending attempt (lookup, then the same key).
    const moved = await deps.boss.redrive(CHARGE_DEAD_LETTER_QUEUE, { ids: [id] });
    if (moved !== 1)
      throw new AppError('CONFLICT', `job ${id} could not be moved back to its queue`, {
        details: { state: job.state },
      });
    await insertAudit(deps.pool, {
      who,
      action: 'redrive_job',
      target: id,
      details: { from: job.queue, to: job.source_name },
    });
    return { jobId: id, queue: job.queue, action: 'redriven' };
  }
  if (job.state !== 'failed') {
    throw new AppError(
      'CONFLICT',
      `only failed or dead-lettered jobs can be retried; job ${id} is ${job.state}`,
      {
        details: { state: job.state },
      },
    );
  }
  await deps.boss.retry(job.queue, id);
  await insertAudit(deps.pool, { who, action: 'retry_job', target: id, details: { queue: job.queue } });
  return { jobId: id, queue: job.queue, action: 'retried' };
}

/** Each redrive statement moves at most this many jobs: short transactions however big the queue is. */
const REDRIVE_PAGE = 5_000;

/**
 * Sends up to `limit` dead-lettered charge jobs, oldest first, back to `cobrar_recorrencia`, as `retryJob` does
 * for one: after a gateway incident that outlasted the retries there may be thousands, and each must be back
 * before its attempt outlives GATEWAY_KEY_RETENTION_HOURS. Safe for any of them: the worker looks the key up
 * before sending anything, and a job whose attempt was resolved since just completes. Only jobs dead-lettered
 * before the call are moved, so one that lands there again meanwhile (a blocked attempt) is not moved twice.
 * The audit row records what moved even when a page fails midway.
 */
export async function redriveChargeDeadLetters(
  deps: OpsDeps,
  who: Actor,
  limit: number,
): Promise<{ queue: string; moved: number }> {
  const createdBefore = await databaseNow(deps.pool);
  let moved = 0;
  let failed = true;
  try {
    while (moved < limit) {
      const page = await deps.boss.redrive(CHARGE_DEAD_LETTER_QUEUE, {
        limit: Math.min(REDRIVE_PAGE, limit - moved),
        createdBefore,
      });
      moved += page;
      if (page === 0) break;
    }
    failed = false;
  } finally {
    await insertAudit(deps.pool, {
      who,
      action: 'redrive_dead_letters',
      target: CHARGE_DEAD_LETTER_QUEUE,
      details: { moved, limit, ...(failed ? { failed: true } : {}) },
    });
    deps.log.info(
      { queue: CHARGE_DEAD_LETTER_QUEUE, moved, failed, by: who.name },
      'dead-lettered charge jobs redriven',
    );
  }
  return { queue: CHARGE_DEAD_LETTER_QUEUE, moved };
}
