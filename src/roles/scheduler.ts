// `scheduler`: registers the four periodic tasks as pg-boss schedules in the business time zone and runs
// pg-boss's cron timer. Any number may run: pg-boss files one job per occurrence however many tick.
import type { PgBoss } from 'pg-boss';
import type { Running } from '../lifecycle.ts';
import { createBoss } from '../queue/boss.ts';
import { PERIODIC_TASKS } from '../queue/task-names.ts';
import type { Config } from '../config.ts';
import type { Logger } from '../log.ts';
import { connectToMigratedDatabase } from './connect.ts';
import type { RoleContext } from './context.ts';

/**
 * Upserts one schedule per task (so restarts and many schedulers leave exactly four rows). `missed: 'once'`
 * makes a scheduler that starts after a missed tick send that occurrence once; the task then works out the
 * occurrence's business date itself.
 */
export async function registerSchedules(boss: PgBoss, config: Config, log: Logger): Promise<void> {
  for (const task of PERIODIC_TASKS) {
    const cron = config.cron[task];
    await boss.schedule(task, cron, null, { tz: config.timeZone, missed: 'once' });
    const next = boss.previewSchedule(cron, { tz: config.timeZone, count: 1 })[0];
    log.info({ task, cron, timeZone: config.timeZone, nextRun: next?.toISOString() }, 'schedule registered');
  }
}

export async function startScheduler(ctx: RoleContext): Promise<Running> {
  const { config, log, databaseUrl } = ctx;
  const pool = await connectToMigratedDatabase(ctx, 'scheduler');
  const boss = createBoss(config, databaseUrl, 'scheduler', log);
  try {
    await boss.start();
    await registerSchedules(boss, config, log);
  } catch (error) {
    await boss.stop({ graceful: false }).catch(() => undefined);
    await pool.end();
    throw error;
  }
  log.info({ tasks: PERIODIC_TASKS.length, timeZone: config.timeZone }, 'scheduler started');
  return {
    stop: async () => {
      await boss.stop({ graceful: true, timeout: 10_000 });
      await pool.end();
    },
  };
}
