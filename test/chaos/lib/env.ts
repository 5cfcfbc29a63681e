// The service's environment under fault injection: short limits so a dead worker's charge is taken over in
// seconds (pg-boss minimums: 10 s heartbeat; supervision every 10 s, fixed in src/queue/boss.ts), quick
// retries, and the gateway timeout well under 80% of the charge limit. `migrate` applies the queue options.
export const CHAOS_TIMINGS = {
  CHARGE_TIME_LIMIT_SECONDS: '11',
  CHARGE_HEARTBEAT_SECONDS: '10',
  GATEWAY_TIMEOUT_MS: '2000',
  CHARGE_RETRY_LIMIT: '8',
  CHARGE_RETRY_DELAY_SECONDS: '1',
  CHARGE_RETRY_DELAY_MAX_SECONDS: '2',
  TASK_TIME_LIMIT_SECONDS: '10',
  TASK_SOFT_TIME_LIMIT_SECONDS: '8',
  TASK_RETRY_LIMIT: '5',
  TASK_RETRY_DELAY_SECONDS: '1',
  WORKER_POLL_INTERVAL_SECONDS: '0.5',
  SCHEDULER_INTERVAL_SECONDS: '2',
} as const;

/** How long the client waits for the gateway: timeout faults hold their answer longer than this. */
export const GATEWAY_TIMEOUT_MS = Number(CHAOS_TIMINGS.GATEWAY_TIMEOUT_MS);
export const CHARGE_RETRY_LIMIT = Number(CHAOS_TIMINGS.CHARGE_RETRY_LIMIT);

/** An operator token for the admin server the suite runs (scope operator: run tasks, redrive jobs). */
export const ADMIN_TOKEN = 'chaos-operator-token-0123456789';

/** The environment every role of a stack gets (plus its own DATABASE_URL, GATEWAY_URL, ports, hooks). */
export function serviceEnv(databaseUrl: string): Record<string, string> {
  return {
    DATABASE_URL: databaseUrl,
    LOG_FORMAT: 'json',
    LOG_LEVEL: 'info',
    BUSINESS_TIME_ZONE: 'America/Sao_Paulo',
    ...CHAOS_TIMINGS,
  };
}
