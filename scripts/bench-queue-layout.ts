// `npm run bench:queue-layout -- [--count N] [--runs K] [--json]`: does a million-job charge queue slow the
// other queues, with its own partition of pg-boss's job table and without (README, "Beyond one machine").
// Prints one table; figures vary with the machine's load, so compare layouts within one run.
import { parseArgs } from 'node:util';
import { benchServer } from './bench/database.ts';
import { measureQueueLayouts, type QueueLayoutResult } from './bench/queue-layout.ts';

const { values } = parseArgs({
  strict: true,
  options: {
    count: { type: 'string', default: '1000000' },
    runs: { type: 'string', default: '1' },
    json: { type: 'boolean', default: false },
  },
});

const ms = (value: number) => value.toFixed(2);
function formatRow(result: QueueLayoutResult): string {
  const phases = Object.values(result.otherQueue)
    .map((phase) => `${ms(phase.fetchP50)}/${ms(phase.fetchP99)}`)
    .join(' | ');
  return `| ${result.layout} | ${result.indexes.chargeTable} | ${result.fanOutSeconds.toFixed(1)} s | ${phases} | ${result.otherFetchIndex ?? '-'} | ${(result.otherTableBytes / 1_048_576).toFixed(1)} MB |`;
}

const server = await benchServer();
try {
  const results: QueueLayoutResult[] = [];
  for (let run = 1; run <= Number(values.runs); run += 1) {
    results.push(
      ...(await measureQueueLayouts({
        adminUrl: server.url,
        count: Number(values.count),
        log: (line) => process.stderr.write(`# run ${run}: ${line}\n`),
      })),
    );
  }
  if (values.json) {
    process.stdout.write(`${JSON.stringify(results)}\n`);
  } else {
    process.stdout.write(
      [
        `Another queue's fetch, p50/p99 ms, with ${values.count} charge jobs:`,
        "| charge queue | its indexes | fan-out | empty | during fan-out | queued | completed | deleted | other fetch uses | other queues' table after |",
        '|---|---|---|---|---|---|---|---|---|---|',
        ...results.map(formatRow),
        '',
      ].join('\n'),
    );
  }
} finally {
  await server.stop();
}
