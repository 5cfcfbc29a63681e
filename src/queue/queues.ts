// Creates the queues with their policies, or brings an existing queue's options in line with the
// configuration. Run by `migrate` only, so that workers never change queue policy behind an operator's back.
import type { PgBoss } from 'pg-boss';
import type { Logger } from '../log.ts';
import type { QueueSpec } from './queue-options.ts';

export async function ensureQueues(boss: PgBoss, specs: QueueSpec[], log: Logger): Promise<void> {
  // Dead-letter queues first: a queue can only name a dead-letter queue that exists.
  const ordered = [...specs].sort(
    (a, b) => Number(b.deadLetter === undefined) - Number(a.deadLetter === undefined),
  );
  for (const spec of ordered) {
    const { name, policy, partition, ...options } = spec;
    const existing = await boss.getQueue(name);
    if (existing === null) {
      await boss.createQueue(name, { policy, partition, ...options });
      log.info({ queue: name, policy }, 'queue created');
      continue;
    }
    if (existing.policy !== policy) {
      // pg-boss cannot change a queue's policy in place; say so rather than silently run with the old one.
      log.error(
        { queue: name, current: existing.policy, wanted: policy },
        'queue policy differs and cannot be changed in place',
      );
    }
    await boss.updateQueue(name, options);
  }
}
