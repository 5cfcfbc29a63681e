// The queue-layout benchmark at a small size: both layouts are built as named (the charge queue in its own
// partition, then in the shared table), every phase measures the other queue, and nothing is left behind.
import t from 'tap';
import { measureQueueLayouts } from '../../scripts/bench/queue-layout.ts';
import { adminUrl, query } from '../helpers/database.ts';

t.test('the charge queue is measured in its own partition and in the shared table', async (t) => {
  const lines: string[] = [];
  const [partitioned, shared] = await measureQueueLayouts({
    adminUrl: adminUrl(),
    count: 2_000,
    log: (line) => lines.push(line),
  });
  if (partitioned === undefined || shared === undefined) throw new Error('two layouts expected');
  t.equal(partitioned.layout, 'partitioned');
  t.not(
    partitioned.chargeTable,
    partitioned.otherTable,
    'partitioned: the charge queue has a table of its own',
  );
  t.equal(shared.layout, 'shared');
  t.equal(shared.chargeTable, shared.otherTable, 'shared: both queues in one table');
  for (const result of [partitioned, shared]) {
    const { empty, duringFanOut, queued, completed, deleted } = result.otherQueue;
    t.same(
      [empty, queued, completed, deleted].map((phase) => phase.fetches),
      [300, 300, 300, 300],
      `${result.layout}: every quiet phase fetched and completed its jobs`,
    );
    t.ok(duringFanOut.fetches > 0, `${result.layout}: the other queue was worked during the fan-out`);
    t.ok(queued.fetchP50 > 0 && queued.fetchP99 >= queued.fetchP50, `${result.layout}: latencies measured`);
    t.ok(result.fanOutSeconds > 0);
    t.match(result.otherFetchIndex, /^job_common_i\d+$/, `${result.layout}: the fetch plan names its index`);
    t.ok(result.otherTableBytes > 0);
  }
  t.ok(
    partitioned.indexes.chargeTable < shared.indexes.chargeTable,
    `a standard queue's partition carries fewer indexes (${partitioned.indexes.chargeTable} < ${shared.indexes.chargeTable})`,
  );
  const left = await query(adminUrl(), `SELECT datname FROM pg_database WHERE datname LIKE $1`, [
    `bench_queue_layout_%_${process.pid}`,
  ]);
  t.same(left, [], 'its databases are dropped');
  t.same(lines, ['partitioned: 2000 charge jobs', 'shared: 2000 charge jobs']);
});
