// The short tier of the fault suite, inside `npm test`: every crash point, each gateway fault kind, Postgres
// restarts and a start while it is down, two schedulers racing for one tick, a frozen worker refused by the
// fence, and recurrences paused, resumed, cancelled and given a new amount and card while they are charged.
// Scenarios run side by side, each on a PostgreSQL cluster of its own. CHAOS_SEED repeats a run.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { FAULT_KINDS } from '../../src/gateway/fake-gateway.ts';
import { CRASH_POINTS } from '../../src/tasks/charge/test-hooks.ts';
import { startCluster } from './lib/cluster.ts';
import { createRng, freshSeed } from './lib/prng.ts';
import { failureReport, HEADER, resultRow, totals } from './lib/report.ts';
import { SCENARIOS, type ScenarioName } from './lib/registry.ts';
import type { ScenarioResult } from './lib/scenario-common.ts';
import { stopStacksOn } from './lib/stack.ts';

const SHORT_TIER: ScenarioName[] = ['crash-points', 'postgres', 'scheduler-race', 'frozen-worker'];
const seed = process.env.CHAOS_SEED === undefined ? freshSeed() : Number(process.env.CHAOS_SEED);

t.test(`fault injection, short tier (seed ${seed})`, async (t) => {
  const started = Date.now();
  const runDir = await mkdtemp(join(tmpdir(), 'recorrencias-chaos-short-'));
  t.comment(`seed ${seed}; reproduce: CHAOS_SEED=${seed} npm test -- --no-checks test/chaos`);
  const results = await Promise.all(
    SHORT_TIER.map(async (name, i): Promise<ScenarioResult> => {
      const scenarioSeed = seed + i;
      const cluster = await startCluster(name);
      try {
        return await SCENARIOS[name]({ cluster, runDir, seed: scenarioSeed, rng: createRng(scenarioSeed) });
      } finally {
        await stopStacksOn(cluster);
        await cluster.destroy();
      }
    }),
  );
  // On stderr too: `npm test` shows a passing file's verdict only, and these figures are the point of the tier.
  const print = (line: string) => {
    t.comment(line);
    process.stderr.write(`# chaos: ${line}\n`);
  };
  print(HEADER);
  for (const result of results) print(resultRow(result));
  for (const line of totals(results).split('\n')) print(line);
  for (const result of results) {
    const reproduce = `npm run chaos -- --scenario ${result.scenario} --iterations 1 --seed ${result.seed}`;
    t.same(result.verdict.violations, [], `${result.scenario}: no violation`, {
      diagnostic: result.verdict.violations.length > 0,
      report: failureReport(result, reproduce),
    });
  }
  const faults = results.map((r) => r.faults);
  const fired = (kind: string) => faults.reduce((n, f) => n + (f[kind] ?? 0), 0);
  for (const point of CRASH_POINTS)
    t.ok(fired(`crash:${point}`) >= 1, `crash point ${point} fired (${fired(`crash:${point}`)})`);
  for (const kind of FAULT_KINDS)
    t.ok(fired(`gateway:${kind}`) >= 1, `gateway fault ${kind} fired (${fired(`gateway:${kind}`)})`);
  for (const kind of [
    'pg:restart_fast',
    'pg:restart_immediate',
    'pg:down_start',
    'pg:terminate_backends',
    'race:two_schedulers_one_tick',
    'fence:late_commit_refused',
    'operator:pausar',
    'operator:retomar',
    'operator:cancelar',
    'operator:trocar',
    'run:next_day',
  ])
    t.ok(fired(kind) >= 1, `${kind} happened (${fired(kind)})`);
  const wall = ((Date.now() - started) / 1000).toFixed(1);
  print(`short tier wall time: ${wall} s (seed ${seed})`);
  if (results.every((r) => r.verdict.violations.length === 0))
    await rm(runDir, { recursive: true, force: true });
  else t.comment(`logs kept in ${runDir}`);
});
