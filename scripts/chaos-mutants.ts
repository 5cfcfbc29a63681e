// `npm run chaos:mutants [-- --seed S --drop-iterations N]`: runs the fault suite against deliberately broken
// variants of the protocol and passes only if it reports violations for every one (and none for the
// unbroken controls): no_fence, fresh_key, charge_paused, and the unique index on approved attempts dropped.
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { PROJECT_ROOT, query, startCluster, type Cluster } from '../test/chaos/lib/cluster.ts';
import { createRng, freshSeed } from '../test/chaos/lib/prng.ts';
import { HEADER, resultRow } from '../test/chaos/lib/report.ts';
import { SCENARIOS, type ScenarioName } from '../test/chaos/lib/registry.ts';
import type { ViolationKind } from '../test/chaos/lib/checker.ts';
import type { ScenarioContext, ScenarioResult } from '../test/chaos/lib/scenario-common.ts';
import type { Stack } from '../test/chaos/lib/stack.ts';

const { values } = parseArgs({
  options: {
    seed: { type: 'string' },
    'drop-iterations': { type: 'string', default: '6' },
    'skip-build': { type: 'boolean', default: false },
  },
});
const seed = values.seed === undefined ? freshSeed() : Number(values.seed);
const dropIterations = Number(values['drop-iterations']);

/**
 * What a resolver without the `status = 'pendente'` guard would write: the gateway's approval of an attempt
 * the fresh_key mutant abandoned (recorded as declined) while its cycle was approved under a new key.
 */
async function staleResolver(stack: Stack): Promise<void> {
  const [abandoned] = await query<{ id: number }>(
    stack.url,
    `SELECT id::int FROM checkout_recorrencia_cobrancas WHERE codigo_recusa = 'MUTANT' ORDER BY id LIMIT 1`,
  );
  if (abandoned === undefined) throw new Error('no abandoned attempt to resolve');
  try {
    await query(
      stack.url,
      `UPDATE checkout_recorrencia_cobrancas SET status = 'aprovada', codigo_recusa = NULL, recusa_reversivel = NULL,
         mensagem = NULL WHERE id = $1`,
      [abandoned.id],
    );
    stack.note('stale_resolver:second_approval_written');
  } catch (error) {
    if ((error as { code?: string }).code !== '23505') throw error;
    stack.note('stale_resolver:refused_by_unique_index');
  }
}

type Run = {
  variant: string;
  label: string;
  scenario: ScenarioName;
  /** Whether the suite must report violations (a mutant) or none (a control). */
  expectViolations: boolean | 'measure';
  /** A violation kind that must (true) or must not (false) be among those reported. */
  kind?: [ViolationKind, boolean];
  ctx: Partial<ScenarioContext>;
};

const runs: Run[] = [
  {
    variant: 'no_fence',
    label: 'control: frozen worker, fence intact',
    scenario: 'frozen-worker',
    expectViolations: false,
    ctx: {},
  },
  {
    variant: 'no_fence',
    label: 'mutant no_fence: frozen worker',
    scenario: 'frozen-worker',
    expectViolations: true,
    ctx: { mutants: 'no_fence' },
  },
  {
    variant: 'fresh_key',
    label: 'control: after-execution faults, same key',
    scenario: 'after-execution',
    expectViolations: false,
    ctx: {},
  },
  {
    variant: 'fresh_key',
    label: 'mutant fresh_key: after-execution faults',
    scenario: 'after-execution',
    expectViolations: true,
    ctx: { mutants: 'fresh_key' },
  },
  {
    variant: 'charge_paused',
    label: 'control: crash points with pauses, phase 1 intact',
    scenario: 'crash-points',
    expectViolations: false,
    ctx: {},
  },
  {
    variant: 'charge_paused',
    label: 'mutant charge_paused: crash points with pauses',
    scenario: 'crash-points',
    expectViolations: true,
    kind: ['sent_while_paused', true],
    ctx: { mutants: 'charge_paused' },
  },
  ...Array.from({ length: dropIterations }, (_, i): Run => ({
    variant: 'drop_index',
    label: `index dropped alone, random iteration ${i + 1}`,
    scenario: 'random',
    expectViolations: 'measure',
    ctx: { dropApprovedIndex: true },
  })),
  {
    variant: 'drop_index',
    label: 'index dropped + fresh_key',
    scenario: 'after-execution',
    expectViolations: 'measure',
    ctx: { dropApprovedIndex: true, mutants: 'fresh_key' },
  },
  {
    variant: 'drop_index',
    label: 'control: fresh_key + guard-less resolver, index kept',
    scenario: 'after-execution',
    expectViolations: 'measure',
    kind: ['db_duplicate_approval', false],
    ctx: { mutants: 'fresh_key', beforeCheck: staleResolver },
  },
  {
    variant: 'drop_index',
    label: 'index dropped + fresh_key + guard-less resolver',
    scenario: 'after-execution',
    expectViolations: true,
    kind: ['db_duplicate_approval', true],
    ctx: { dropApprovedIndex: true, mutants: 'fresh_key', beforeCheck: staleResolver },
  },
];

if (!values['skip-build']) {
  const build = spawnSync('tsc', ['-p', 'tsconfig.build.json'], { cwd: PROJECT_ROOT, stdio: 'inherit' });
  if (build.status !== 0) process.exit(1);
}
console.log(
  `# chaos mutants: seed ${seed}; reproduce: npm run chaos:mutants -- --seed ${seed} --drop-iterations ${dropIterations}`,
);
const runDir = await mkdtemp(join(tmpdir(), 'recorrencias-chaos-mutants-'));
const clusters: Cluster[] = [];
const results: Array<{ run: Run; result: ScenarioResult }> = [];
let next = 0;
async function lane(index: number): Promise<void> {
  const cluster = await startCluster(`mutants${index}`);
  clusters.push(cluster);
  for (let i = next++; i < runs.length; i = next++) {
    const run = runs[i] as Run;
    const runSeed = seed + i;
    const result = await SCENARIOS[run.scenario]({
      cluster,
      runDir,
      seed: runSeed,
      rng: createRng(runSeed),
      ...run.ctx,
    });
    results.push({ run, result });
    console.log(`${resultRow(result)}  <- ${run.label}`);
  }
}
console.log(HEADER);
await Promise.all([0, 1, 2].map(lane));
await Promise.all(clusters.map((cluster) => cluster.destroy()));

let ok = true;
console.log('\n# verdict by variant');
for (const variant of ['no_fence', 'fresh_key', 'charge_paused', 'drop_index']) {
  console.log(`\n## ${variant}`);
  for (const { run, result } of results.filter((r) => r.run.variant === variant)) {
    const kinds = new Map<string, number>();
    for (const v of result.verdict.violations) kinds.set(v.kind, (kinds.get(v.kind) ?? 0) + 1);
    const found = result.verdict.violations.length;
    const kindOk = run.kind === undefined || kinds.has(run.kind[0]) === run.kind[1];
    const pass =
      kindOk && (run.expectViolations === 'measure' || (run.expectViolations ? found > 0 : found === 0));
    if (!pass) ok = false;
    const summary = found === 0 ? 'no violation' : [...kinds].map(([kind, n]) => `${kind}=${n}`).join(', ');
    const notes = Object.keys(result.faults)
      .filter((kind) => kind.startsWith('stale_resolver') || kind.startsWith('fence'))
      .map((kind) => ` {${kind}}`)
      .join('');
    const required =
      run.kind === undefined ? '' : ` [${run.kind[0]} ${run.kind[1] ? 'required' : 'forbidden'}]`;
    const measured = run.expectViolations === 'measure' ? ' [measured]' : '';
    console.log(
      `${pass ? 'ok    ' : 'NOT OK'} ${run.label} (seed ${result.seed}): ${summary}${required}${measured}${notes}`,
    );
    for (const v of result.verdict.violations.slice(0, 3)) console.log(`         ${v.kind}: ${v.detail}`);
  }
}
const alone = results.filter((r) => r.run.label.startsWith('index dropped alone'));
console.log(
  `\n# index dropped alone: ${alone.length} iterations, ${alone.reduce((n, r) => n + r.result.verdict.violations.length, 0)} violations, ` +
    `${alone.reduce((n, r) => n + r.result.verdict.figures.charges, 0)} approved charges checked`,
);
console.log(
  ok
    ? '# every mutant was caught and every control passed'
    : '# FAILED: a mutant went unnoticed or a control failed',
);
if (ok) await rm(runDir, { recursive: true, force: true });
else console.log(`# logs kept in ${runDir}`);
process.exit(ok ? 0 : 1);
