// The policy of every queue, derived from configuration: time limits, retries, dead letters and retention.
// `migrate` creates the queues with these options and updates them when the configuration changes; workers
// and `check` compare them with what is stored (queuePolicyDrift).
import type { Queue } from 'pg-boss';
import type { Config } from '../config.ts';
import {
  CHARGE_DEAD_LETTER_QUEUE,
  CHECKOUT_EVENT_QUEUE,
  CHARGE_QUEUE,
  NOTICE_DELIVERY_QUEUE,
  PERIODIC_TASKS,
} from './task-names.ts';

export type QueueSpec = Omit<Queue, 'name'> & { name: string };

const DAY_SECONDS = 86_400;
/**
 * A dead-lettered charge waits for an operator, however long that takes: for a recurrence paused, cancelled or
 * on hold since, redriving its job is what resolves its unknown attempt. So it is not deleted with the other
 * queues' unworked jobs (QUEUED_JOB_RETENTION_DAYS), and RecorrenciasDeadLetterNotEmpty stays until it is
 * handled.
 */
const DEAD_LETTER_RETENTION_DAYS = 3_650;

export function queueSpecs(config: Config): QueueSpec[] {
  const retention = {
    retentionSeconds: config.retention.queuedJobDays * DAY_SECONDS,
    deleteAfterSeconds: config.retention.jobHistoryDays * DAY_SECONDS,
  };
  const periodic: QueueSpec[] = PERIODIC_TASKS.map((name) => ({
    name,
    policy: 'standard',
    // The hard limit: past it pg-boss aborts job.signal and retries the job elsewhere.
    expireInSeconds: config.tasks.hardLimitSeconds,
    retryLimit: config.tasks.retryLimit,
    retryDelay: config.tasks.retryDelaySeconds,
    retryBackoff: true,
    ...retention,
  }));
  return [
    ...periodic,
    // Webhook outboxes: about a day of retries, 30 s doubling up to an hour between tries.
    ...[NOTICE_DELIVERY_QUEUE, CHECKOUT_EVENT_QUEUE].map((name): QueueSpec => ({
      name,
      policy: 'standard',
      expireInSeconds: 60,
      retryLimit: 30,
      retryDelay: 30,
      retryBackoff: true,
      retryDelayMax: 3_600,
      ...retention,
    })),
    {
      name: CHARGE_DEAD_LETTER_QUEUE,
      policy: 'standard',
      // Nothing works this queue: its jobs wait for an operator (or are superseded by the next run).
      retryLimit: 0,
      ...retention,
      retentionSeconds: DEAD_LETTER_RETENTION_DAYS * DAY_SECONDS,
    },
    {
      name: CHARGE_QUEUE,
      policy: 'standard',
      // Its own job table: the morning's million rows, and their dead rows once retention deletes them, stay
      // out of the table the other queues share (measured in the README, "Beyond one machine").
      partition: true,
      // Short expiry plus heartbeat: a dead worker's charge is taken over in seconds, not minutes.
      expireInSeconds: config.charges.hardLimitSeconds,
      heartbeatSeconds: config.charges.heartbeatSeconds,
      retryLimit: config.charges.retryLimit,
      retryDelay: config.charges.retryDelaySeconds,
      retryBackoff: true,
      retryDelayMax: config.charges.retryDelayMaxSeconds,
      deadLetter: CHARGE_DEAD_LETTER_QUEUE,
      // pg-boss warns ("large queue backlog") above 10,000 waiting jobs by default: a morning run queues the
      // whole day's charges at once, so that default would warn every morning, and warnings that always come
      // teach operators to ignore them.
      warningQueueSize: config.charges.backlogWarning,
      ...retention,
    },
  ];
}

/**
 * Where the stored queues (boss.getQueues()) differ from `config` (say TASK_RETRY_DELAY_SECONDS changed on the
 * workers but `migrate` not run since: pg-boss goes by the stored policy), as "queue: option stored
 * (configured X)". Only options this configuration sets are compared; a missing queue is reported too.
 */
export function queuePolicyDrift(stored: readonly Queue[], config: Config): string[] {
  const queues = new Map(stored.map((queue) => [queue.name, queue]));
  const drift: string[] = [];
  for (const spec of queueSpecs(config)) {
    const stored = queues.get(spec.name);
    if (stored === undefined) {
      drift.push(`${spec.name}: missing`);
      continue;
    }
    for (const [option, wanted] of Object.entries(spec)) {
      if (option === 'name' || option === 'partition' || wanted === undefined) continue;
      const actual = (stored as unknown as Record<string, unknown>)[option];
      if (actual !== wanted)
        drift.push(`${spec.name}: ${option} ${String(actual)} (configured ${String(wanted)})`);
    }
  }
  return drift;
}
