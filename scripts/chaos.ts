// `npm run chaos -- [--iterations N] [--seed S] [--parallel P] [--scenario NAME] [--mutants M] [--drop-index]`:
// the long tier of the fault suite. Builds dist/, starts P PostgreSQL clusters of its own, and runs N seeded
// iterations (iteration i uses seed S+i) across them, printing one row each and the totals; exits 1 on any violation.
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { PROJECT_ROOT, startCluster, type Cluster } from '../test/chaos/lib/cluster.ts';
import { createRng, freshSeed } from '../test/chaos/lib/prng.ts';
import { failureReport, HEADER, resultRow, totals } from '../test/chaos/lib/report.ts';
import { SCENARIOS, type ScenarioName } from '../test/chaos/lib/registry.ts';
import type { ScenarioResult } from '../test/chaos/lib/scenario-common.ts';
import { stopStacksOn } from '../test/chaos/lib/stack.ts';

const { values } = parseArgs({
  options: {
    iterations: { type: 'string', default: '20' },
    seed: { type: 'string' },
    parallel: { type: 'string', default: '3' },
    scenario: { type: 'string', default: 'random' },
    mutants: { type: 'string' },
    'drop-index': { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
    'skip-build': { type: 'boolean', default: false },
  },
});
const iterations = Number(values.iterations);
const baseSeed = values.seed === undefined ? freshSeed() : Number(values.seed);
const parallel = Math.max(1, Math.min(Number(values.parallel), iterations));
const scenario = values.scenario as ScenarioName;
if (
  !(scenario in SCENARIOS) ||
  !Number.isInteger(iterations) ||
  iterations < 1 ||
  !Number.isInteger(baseSeed)
) {
  console.error(
    `usage: npm run chaos -- --iterations N --seed S [--parallel P] [--scenario ${Object.keys(SCENARIOS).join('|')}]`,
  );
  process.exit(2);
}

export function reproduceCommand(seed: number): string {
  const extra = [
    scenario === 'random' ? '' : ` --scenario ${scenario}`,
    values.mutants === undefined ? '' : ` --mutants ${values.mutants}`,
    values['drop-index'] ? ' --drop-index' : '',
  ].join('');
  return `npm run chaos -- --iterations 1 --seed ${seed}${extra}`;
}

if (!values['skip-build']) {
  const build = spawnSync('tsc', ['-p', 'tsconfig.build.json'], { cwd: PROJECT_ROOT, stdio: 'inherit' });
  if (build.status !== 0) process.exit(1);
}
console.log(
  `# chaos long tier: ${iterations} iteration(s) of ${scenario}, seed ${baseSeed}, ${parallel} lane(s)`,
);
console.log(
  `# reproduce the whole run: npm run chaos -- --iterations ${iterations} --seed ${baseSeed} --parallel ${parallel}${scenario === 'random' ? '' : ` --scenario ${scenario}`}`,
);
const runDir = await mkdtemp(join(tmpdir(), 'recorrencias-chaos-run-'));
const clusters: Cluster[] = [];
/** Stops every role process and cluster this run started: run at the end, and when the run is cut short. */
const cleanUp = async () => {
  await Promise.all(clusters.map((cluster) => stopStacksOn(cluster).catch(() => undefined)));
  await Promise.all(clusters.map((cluster) => cluster.destroy().catch(() => undefined)));
};
// Interrupted or crashed, the harness still takes its roles and clusters down with it: left running, they
// hold ports and keep charging against clusters nobody checks.
const abandon = (code: number, error?: unknown) => {
  if (error !== undefined) console.error('# chaos harness crashed:', error);
  void cleanUp().then(() => process.exit(code));
};
process.once('SIGINT', () => abandon(130));
process.once('SIGTERM', () => abandon(143));
process.once('uncaughtException', (error) => abandon(1, error));
process.once('unhandledRejection', (error) => abandon(1, error));

const started = Date.now();
const results: ScenarioResult[] = [];
let next = 0;
console.log(HEADER);
async function lane(index: number): Promise<void> {
  const cluster = await startCluster(`lane${index}`);
  clusters.push(cluster);
  for (let i = next++; i < iterations; i = next++) {
    const seed = baseSeed + i;
    let result: ScenarioResult;
    try {
      result = await SCENARIOS[scenario]({
        cluster,
        runDir,
        seed,
        rng: createRng(seed),
        ...(values.mutants === undefined ? {} : { mutants: values.mutants }),
        dropApprovedIndex: values['drop-index'],
      });
    } catch (error) {
      result = {
        scenario,
        seed,
        verdict: {
          violations: [{ kind: 'scenario', detail: `aborted: ${(error as Error).stack ?? String(error)}` }],
          findings: [],
          figures: {
            recurrences: 0,
            attempts: 0,
            charges: 0,
            duplicates: 0,
            lost: 0,
            mismatches: 0,
            nonTerminalJobs: 0,
          },
        },
        faults: {},
        recoveryMs: undefined,
        wallMs: 0,
        runDir,
      };
      // A scenario that aborted leaves its processes behind, and maybe the cluster stopped: clean up.
      await stopStacksOn(cluster);
      await cluster.pg.restart('fast').catch(() => undefined);
    }
    results.push(result);
    console.log(resultRow(result));
    if (result.verdict.violations.length > 0) console.log(failureReport(result, reproduceCommand(seed)));
  }
}
await Promise.all(Array.from({ length: parallel }, (_, i) => lane(i)));
await cleanUp();
console.log(totals(results));
console.log(`# wall time: ${((Date.now() - started) / 1000).toFixed(0)} s`);
const failed = results.filter((r) => r.verdict.violations.length > 0);
if (failed.length === 0 && !values.keep) await rm(runDir, { recursive: true, force: true });
else console.log(`# logs kept in ${runDir}`);
process.exit(failed.length === 0 ? 0 : 1);
