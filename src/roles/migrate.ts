// `migrate`: applies sql/ and pg-boss's schema, creates or updates the queues with their policies and the
// schedules (honouring pauses), then exits.
// Safe to run from several processes at once: the second waits for the first and then finds nothing to do.
import { migrate } from '../db/migrator.ts';
import { createDbPool } from '../db/pool.ts';
import { runnerFor } from '../db/raw-query.ts';
import { assertSessionSettings } from '../db/session-settings.ts';
import { waitForDatabase } from '../db/wait-for-database.ts';
import { createBoss } from '../queue/boss.ts';
import { queueSpecs } from '../queue/queue-options.ts';
import { ensureQueues } from '../queue/queues.ts';
import type { RoleContext } from './context.ts';
import { syncSchedules } from './scheduler.ts';

export async function runMigrate(ctx: RoleContext): Promise<{ applied: string[] }> {
  const { config, log, databaseUrl } = ctx;
  await waitForDatabase(databaseUrl, log, { signal: ctx.signal });
  const pool = await createDbPool(databaseUrl, {
    maxConnections: 2,
    applicationName: 'recorrencias:migrate',
  });
  try {
    // Refused before anything is written, as every other role refuses it: the schedules it stores and the
    // roles that follow read dates.
    await assertSessionSettings(runnerFor(pool));
    const applied = await migrate(databaseUrl, log, undefined, config.migrations);
    const boss = createBoss(config, databaseUrl, 'migrate', log);
    try {
      // start() installs or upgrades pg-boss's own schema (it serialises concurrent installers itself).
      await boss.start();
      await ensureQueues(boss, queueSpecs(config), log);
      // The schedule rows too (the timer runs only in schedulers), so a migrated database is complete.
      await syncSchedules(boss, pool, config, log, new Map());
    } finally {
      await boss.stop({ graceful: false, close: true });
    }
    log.info({ applied }, applied.length > 0 ? 'database migrated' : 'database already up to date');
    return { applied };
  } finally {
    await pool.end();
  }
}
