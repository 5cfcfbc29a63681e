// `scheduler`: keeps the four periodic tasks registered as pg-boss schedules in the business time zone and
// runs pg-boss's cron timer. Any number may run: pg-boss files one job per occurrence however many tick.
// Every pass it reconciles the schedules with tarefas_pausadas: a paused task has no schedule (its ticks are
// skipped), a resumed one gets it back.
import type { PgBoss } from 'pg-boss';
import type { Config } from '../config.ts';
import type { DatabasePool } from '../db/pool.ts';
import { extendQueuedRetention, listPauses, lockPausesAndSchedules } from '../db/pauses.ts';
import { listSchedules } from '../db/schedules.ts';
import { businessDate } from '../domain/dates.ts';
import type { Running } from '../lifecycle.ts';
import type { Logger } from '../log.ts';
import { describeBlindAlert, RUN_LATE_ADVICE, runLateAlertsThatCannotFire } from '../ops/run-late-alerts.ts';
import { bossDb } from '../queue/boss-executor.ts';
import { createBoss } from '../queue/boss.ts';
import { PERIODIC_TASKS } from '../queue/task-names.ts';
import { connectToMigratedDatabase } from './connect.ts';
import type { RoleContext } from './context.ts';

/**
 * Makes pg-boss's schedules match the configuration and the pauses: upserts (so restarts and many schedulers
 * leave exactly one row per task) only what is missing or different. `missed: 'once'` makes a scheduler that
 * starts after a missed tick send that occurrence once; the task works out the occurrence's business date.
 */
export async function syncSchedules(
  boss: PgBoss,
  pool: DatabasePool,
  config: Config,
  log: Logger,
  renewals: RetentionRenewals,
): Promise<void> {
  // Pauses and schedules are read and changed under the lock a task's pause and resume take: read apart, a
  // pause or resume committed in between would be undone until the next pass. Everything under the lock runs
  // on this one connection, so the lock is never held while waiting for another.
  const paused = await pool.transaction(async (tx) => {
    await lockPausesAndSchedules(tx);
    const pausedNow = new Set((await listPauses(tx)).map((pause) => pause.fila));
    const current = await listSchedules(tx, PERIODIC_TASKS);
    for (const task of PERIODIC_TASKS) {
      const row = current.find((schedule) => schedule.name === task);
      if (pausedNow.has(task)) {
        if (row !== undefined) {
          await boss.unschedule(task, '', { db: bossDb(tx) });
          log.warn({ task }, 'task paused: schedule removed, its ticks are skipped');
        }
        continue;
      }
      const cron = config.cron[task];
      if (row !== undefined && row.cron === cron && row.timezone === config.timeZone) continue;
      // Written differently within the last two passes: another process registers schedules with another
      // CRON_* (a scheduler of a rollout half done, migrate, or an admin server's resume). Each pass would put
      // its own back, and a tick could fall on either time.
      if (row !== undefined && row.updated_seconds_ago < 2 * config.schedulerIntervalSeconds)
        log.warn(
          { task, registered: row.cron, registeredTimeZone: row.timezone, configured: cron },
          'CRON_* values disagree: another scheduler, migrate or admin registered a different schedule moments ago; give every role the same CRON_* values',
        );
      await boss.schedule(task, cron, null, { tz: config.timeZone, missed: 'once', db: bossDb(tx) });
      const next = boss.previewSchedule(cron, { tz: config.timeZone, count: 1 })[0];
      log.info(
        { task, cron, timeZone: config.timeZone, nextRun: next?.toISOString() },
        'schedule registered',
      );
    }
    return pausedNow;
  });
  await renewPausedRetention(pool, paused, renewals);
}

/**
 * How often a scheduler renews the retention of a paused queue's jobs. Renewal reads every queued job of the
 * queue (keep_until is in no index): a million after a morning's fan-out, too much for every 30-second pass,
 * and needless, as it only has to come within the week the renewal keeps in hand. Pausing renews at once.
 */
const RETENTION_RENEWAL_MS = 60 * 60 * 1000;

/** When this scheduler last renewed each paused queue's retention (ms since the epoch). */
export type RetentionRenewals = Map<string, number>;

async function renewPausedRetention(
  pool: DatabasePool,
  paused: ReadonlySet<string>,
  renewals: RetentionRenewals,
): Promise<void> {
  for (const queue of paused) {
    if (Date.now() - (renewals.get(queue) ?? 0) < RETENTION_RENEWAL_MS) continue;
    await extendQueuedRetention(pool, queue);
    renewals.set(queue, Date.now());
  }
}

export async function startScheduler(ctx: RoleContext): Promise<Running> {
  const { config, log, databaseUrl } = ctx;
  const pool = await connectToMigratedDatabase(ctx, 'scheduler');
  const boss = createBoss(config, databaseUrl, 'scheduler', log);
  const renewals: RetentionRenewals = new Map();
  try {
    await boss.start();
    await syncSchedules(boss, pool, config, log, renewals);
  } catch (error) {
    await boss.stop({ graceful: false }).catch(() => undefined);
    await pool.end();
    throw error;
  }
  // One pass at a time: a pass slowed down (a busy database) must not have the next ones pile up behind it,
  // each holding a connection.
  let pass: Promise<void> | null = null;
  const timer = setInterval(() => {
    if (pass !== null) return;
    pass = syncSchedules(boss, pool, config, log, renewals)
      .catch((error: unknown) => log.error({ err: error }, 'could not reconcile schedules'))
      .finally(() => (pass = null));
  }, config.schedulerIntervalSeconds * 1000);
  timer.unref();
  // The schedule is the operator's choice, but one this late leaves its task unwatched: say so where it is set.
  for (const blind of runLateAlertsThatCannotFire(config, businessDate(new Date(), config.timeZone)))
    log.warn(blind, `${describeBlindAlert(blind)}; ${RUN_LATE_ADVICE}`);
  log.info({ tasks: PERIODIC_TASKS.length, timeZone: config.timeZone }, 'scheduler started');
  return {
    stop: async () => {
      clearInterval(timer);
      await pass;
      await boss.stop({ graceful: true, timeout: 10_000 });
      await pool.end();
    },
  };
}
