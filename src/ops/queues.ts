// Queue states for operators: per queue of ours, its live jobs by state (deferred apart from queued) and its
// failed ones, how many of its jobs sit in its dead-letter queue, and whether it is paused. Finished jobs are
// not counted (see countLiveJobsByQueueAndState); the last minutes' completions are in /metrics.
import { countLiveJobsByQueueAndState } from '../db/jobs.ts';
import { listPauses } from '../db/pauses.ts';
import { catalog } from './catalog.ts';
import type { OpsDeps } from './deps.ts';

export type QueueState = {
  queue: string;
  kind: string;
  paused: boolean;
  counts: {
    queued: number;
    deferred: number;
    retry: number;
    active: number;
    failed: number;
  };
  deadLettered: number | null;
};

export async function queueStates(deps: OpsDeps): Promise<QueueState[]> {
  const [rows, pauses, queues] = await Promise.all([
    countLiveJobsByQueueAndState(deps.pool),
    listPauses(deps.pool),
    deps.boss.getQueues(),
  ]);
  const count = (queue: string, predicate: (row: (typeof rows)[number]) => boolean) =>
    rows.filter((row) => row.queue === queue && predicate(row)).reduce((sum, row) => sum + row.n, 0);
  return catalog().map((entry) => {
    const deadLetter = queues.find((queue) => queue.name === entry.name)?.deadLetter;
    return {
      queue: entry.name,
      kind: entry.kind,
      paused: pauses.some((pause) => pause.fila === entry.name),
      counts: {
        queued: count(entry.name, (row) => row.state === 'created' && !row.deferred),
        deferred: count(entry.name, (row) => row.deferred),
        retry: count(entry.name, (row) => row.state === 'retry' && !row.deferred),
        active: count(entry.name, (row) => row.state === 'active'),
        failed: count(entry.name, (row) => row.state === 'failed'),
      },
      deadLettered:
        deadLetter === undefined || deadLetter === null
          ? null
          : count(deadLetter, (row) => row.state === 'created' || row.state === 'retry'),
    };
  });
}
