// `npm run bench -- [options]`: the benchmark of the morning run (see README, "Performance"). Prints one table
// and writes the figures as JSON to bench-results/. Not a test: numbers on a shared machine are noisy; the
// same-run ratio to the Postgres ceiling is what compares across runs.
import { mkdirSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { benchServer } from './bench/database.ts';
import { formatReport } from './bench/report.ts';
import { runBenchmark } from './bench/run.ts';

const { values } = parseArgs({
  strict: true,
  options: {
    count: { type: 'string', default: '100000' },
    'latency-ms': { type: 'string', default: '0' },
    'decline-rate': { type: 'string', default: '0.1' },
    workers: { type: 'string', default: '2' },
    concurrency: { type: 'string', default: '32' },
    'db-pool': { type: 'string', default: '10' },
    'boss-pool': { type: 'string', default: '4' },
    'gateway-cap': { type: 'string', default: '200' },
    date: { type: 'string', default: '2031-03-10' },
    runs: { type: 'string', default: '1' },
    'skip-ceiling': { type: 'boolean', default: false },
    profile: { type: 'string' },
    keep: { type: 'boolean', default: false },
    // The heap sizing the Dockerfile gives every role (see README, "Performance").
    'worker-node-options': { type: 'string', default: '--max-semi-space-size=8 --max-old-space-size=160' },
    out: { type: 'string' },
    json: { type: 'boolean', default: false },
  },
});

const log = (line: string) => {
  if (!values.json) process.stderr.write(`# ${line}\n`);
};
const database = await benchServer();
try {
  const results = [];
  for (let run = 1; run <= Number(values.runs); run += 1) {
    log(`run ${run} of ${values.runs}`);
    results.push(
      await runBenchmark({
        adminUrl: database.url,
        count: Number(values.count),
        latencyMs: Number(values['latency-ms']),
        declineRate: Number(values['decline-rate']),
        workers: Number(values.workers),
        concurrency: Number(values.concurrency),
        dbPool: Number(values['db-pool']),
        bossPool: Number(values['boss-pool']),
        gatewayCap: Number(values['gateway-cap']),
        date: values.date,
        skipCeiling: values['skip-ceiling'],
        profileDir: values.profile ?? null,
        workerNodeOptions: values['worker-node-options'],
        keep: values.keep,
        log,
      }),
    );
  }
  mkdirSync('bench-results', { recursive: true });
  const file = values.out ?? `bench-results/bench-${new Date().toISOString().replaceAll(':', '-')}.json`;
  writeFileSync(file, `${JSON.stringify(results, null, 2)}\n`);
  process.stdout.write(
    values.json ? `${JSON.stringify(results)}\n` : `${formatReport(results)}\nwritten to ${file}\n`,
  );
  process.exitCode = results.every((result) => result.correctness.ok) ? 0 : 1;
} finally {
  await database.stop();
}
