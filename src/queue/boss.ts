// Builds the pg-boss instance for a role. Only `migrate` installs or upgrades pg-boss's schema, only
// `scheduler` runs the cron timer; workers and schedulers supervise (expire and retry lost jobs); admin does
// neither.
import { PgBoss } from 'pg-boss';
import type { Config } from '../config.ts';
import type { Logger } from '../log.ts';
import { BOSS_SCHEMA } from '../db/schema-check.ts';

export type BossRole = 'migrate' | 'worker' | 'scheduler' | 'admin' | 'cli';

export function createBoss(config: Config, databaseUrl: string, role: BossRole, log: Logger): PgBoss {
  const boss = new PgBoss({
    connectionString: databaseUrl,
    schema: BOSS_SCHEMA,
    application_name: `recorrencias:${role}:boss`,
    max: config.pools.boss,
    migrate: role === 'migrate',
    schedule: role === 'scheduler',
    supervise: role === 'worker' || role === 'scheduler',
    // Frequent supervision is cheap (one claimed statement per pass) and is what bounds how long a charge
    // held by a dead worker stays stuck.
    superviseIntervalSeconds: 10,
    monitorIntervalSeconds: 10,
    cronMonitorIntervalSeconds: config.schedulerIntervalSeconds,
    instanceName: `recorrencias-${role}`,
    // The instance registry is what /tasks reads to show which workers serve each queue.
    instanceHeartbeatSeconds: 10,
  });
  // Without a listener the first database hiccup would crash the process; with one it is logged and
  // pg-boss carries on (workers resume by themselves once the database is back).
  boss.on('error', (error) => log.error({ err: error }, 'pg-boss error'));
  boss.on('warning', (warning) => log.warn({ warning: warning.data }, `pg-boss warning: ${warning.message}`));
  return boss;
}
