// One iteration of the long tier: everything drawn from the seed. A seeded data set, 2-3 workers and 1-2
// schedulers, crash points armed by counter, gateway faults (scripted rules that must fire plus a random
// background), a timeline of external kill -9s and database faults in the first seconds of charging, and in
// half the iterations each, meanwhile: the checkout pausing (mostly resuming) or cancelling a few
// recurrences, changing the amount or card of a few, and giving held ones a new card for an operator to
// reactivate them. In about a third, Postgres also restarts while a worker is starting.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { addDays } from '../../../src/domain/dates.ts';
import { FAULT_KINDS } from '../../../src/gateway/fake-gateway.ts';
import { terminateServiceBackends } from './cluster.ts';
import { GATEWAY_TIMEOUT_MS } from './env.ts';
import type { FaultPlan } from './gateway-client.ts';
import {
  finishScenario,
  generateRecurrences,
  seededRows,
  type ScenarioContext,
  type ScenarioResult,
} from './scenario-common.ts';
import { openStack } from './scenarios.ts';
import type { Stack } from './stack.ts';
import { drawStatusChanges, drawTermsChanges, reactivateHeld, runChanges } from './checkout-changes.ts';
import { inBackground, sleepUntil, until } from './wait.ts';

const CHARGE_POINTS = [
  'before_phase1',
  'after_phase1',
  'after_gateway',
  'in_phase3',
  'after_commit',
] as const;
const DB_FAULTS = [
  'restart_fast',
  'restart_immediate',
  'restart_kill',
  'terminate_backends',
  'down_start',
] as const;
type Event =
  | { at: number; kind: 'kill9'; slot: string }
  | { at: number; kind: (typeof DB_FAULTS)[number] }
  | { at: number; kind: 'restart_in_startup'; mode: 'immediate' | 'kill'; afterSpawnMs: number };

async function inject(stack: Stack, event: Event): Promise<void> {
  const server = stack.cluster.pg;
  switch (event.kind) {
    case 'kill9':
      await stack.sup.slots.get(event.slot)?.kill9();
      return;
    case 'restart_fast':
    case 'restart_immediate':
    case 'restart_kill':
      await server.restart(
        event.kind === 'restart_fast' ? 'fast' : event.kind === 'restart_immediate' ? 'immediate' : 'kill',
      );
      stack.note(`pg:${event.kind}`);
      return;
    case 'terminate_backends':
      stack.note('pg:terminate_backends', await terminateServiceBackends(stack.url));
      return;
    case 'down_start': {
      // A worker (re)started while the database is down must wait for it, then come up.
      await server.stop();
      const worker = stack.sup.slots.get('worker1');
      const from = (worker?.incarnation() ?? 0) + 1;
      await worker?.kill9();
      await worker?.waitForLog((l) => l.msg === 'database unreachable, waiting', 30_000, from);
      await server.restart('fast');
      await worker?.waitForLog((l) => l.msg === 'worker started', 60_000, from);
      stack.note('pg:down_start');
      return;
    }
    case 'restart_in_startup': {
      // Postgres restarts while a worker is starting, after it found the database up: the worker must keep
      // waiting and come up, not give up (a pool connection dying as it opened once made it exit).
      const worker = stack.sup.slots.get('worker1');
      if (worker === undefined) return;
      const from = worker.incarnation() + 1;
      await worker.kill9();
      await until(
        'worker1 to be restarted',
        () => (worker.incarnation() >= from ? true : undefined),
        30_000,
        10,
      );
      await sleep(event.afterSpawnMs);
      await server.restart(event.mode);
      stack.note(`pg:restart_in_startup_${event.mode}`);
      await worker.waitForLog((l) => l.msg === 'worker started', 60_000, from);
      return;
    }
  }
}

export async function randomScenario(ctx: ScenarioContext): Promise<ScenarioResult> {
  const startedAt = Date.now();
  const rng = ctx.rng;
  const due = addDays('2031-01-01', rng.int(0, 5 * 365));
  const stack = await openStack(
    ctx,
    'random',
    { latencyMs: rng.int(10, 80), declineRate: 0.15 },
    { WORKER_CONCURRENCY: String(rng.int(1, 3)) },
  );
  const rows = await stack.seed(
    generateRecurrences(rng, { count: rng.int(12, 30), due, holds: rng.int(0, 2) }),
  );
  const kinds = FAULT_KINDS.filter((kind) => kind !== 'hold');
  const ruled = rng.sample(kinds, rng.int(1, 3));
  const positions = rng.sample([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], ruled.length);
  const faultPlan: FaultPlan = {
    rules: ruled.map((fault, i) => ({ nth: positions[i] ?? i + 1, fault })),
    random: {
      seed: ctx.seed,
      rate: rng.next() * 0.3,
      kinds: rng.sample(kinds, rng.int(2, 6)),
    },
    holdMs: GATEWAY_TIMEOUT_MS + 1_000,
    delayMs: rng.int(100, 800),
  };
  await stack.gateway.setFaults(faultPlan);
  const workers = rng.int(2, 3);
  const schedulers = rng.int(1, 2);
  // At most one crash point per worker, reached the first time (n = 1): every armed point must fire.
  const arms = new Map<string, string[]>();
  const fanout = rng.chance(0.3);
  if (fanout) arms.set('worker1', ['fanout_after_page:1']);
  for (const slot of ['worker1', 'worker2']) {
    if (!arms.has(slot) && rng.chance(0.6)) arms.set(slot, [`${rng.pick(CHARGE_POINTS)}:1`]);
  }
  const events: Event[] = [];
  for (let i = rng.int(0, 2); i > 0; i--) {
    const slot = rng.pick(['worker1', 'worker2', `worker${workers}`, 'scheduler1', 'admin']);
    events.push({ at: rng.int(0, 5_000), kind: 'kill9', slot });
  }
  if (rng.chance(0.6)) events.push({ at: rng.int(300, 4_000), kind: rng.pick(DB_FAULTS) });
  const startupRng = rng.fork('startup-restarts');
  if (startupRng.chance(0.3))
    events.push({
      at: startupRng.int(300, 4_000),
      kind: 'restart_in_startup',
      mode: startupRng.pick(['immediate', 'kill'] as const),
      // From the new process's spawn: Node loads for ~0.3 s, then the probe, the pool and pg-boss start.
      afterSpawnMs: startupRng.int(0, 1_500),
    });
  events.sort((a, b) => a.at - b.at);
  // Drawn from forks: the plans of seeds run before the checkout's changes existed are unchanged.
  const activeIds = rows.filter((row) => !row.spec.onHold).map((row) => row.id);
  const statusRng = rng.fork('status-changes');
  const termsRng = rng.fork('terms-changes');
  const changePlans = [
    ...(statusRng.chance(0.5) ? drawStatusChanges(statusRng, activeIds, 4_000) : []),
    ...(termsRng.chance(0.5) ? drawTermsChanges(termsRng, activeIds, 4_000) : []),
  ];
  const reactivate = rng.fork('reactivations').chance(0.5);
  await writeFile(
    join(stack.runDir, 'plan.json'),
    JSON.stringify(
      { due, faultPlan, workers, schedulers, arms: [...arms], events, changePlans, reactivate },
      null,
      2,
    ),
  );

  const starts = [stack.startRole('admin', 'admin')];
  for (let i = 1; i <= schedulers; i++) starts.push(stack.startRole(`scheduler${i}`, 'scheduler'));
  starts.push(stack.startRole('worker1', 'worker', { arms: arms.get('worker1') ?? [] }));
  await Promise.all(starts);
  const others = async () => {
    const rest = [];
    for (let i = 2; i <= workers; i++)
      rest.push(stack.startRole(`worker${i}`, 'worker', { arms: arms.get(`worker${i}`) ?? [] }));
    await Promise.all(rest);
  };
  if (!fanout) await others();
  await stack.runTask('processar_recorrencias_do_dia', due);
  if (fanout) {
    await until(
      'the fan-out crash point',
      () => (stack.sup.exits.some((e) => e.crashPoint === 'fanout_after_page') ? true : undefined),
      60_000,
    );
    await others();
  }
  const t0 = Date.now();
  const terms = new Map(rows.map(({ id, spec }) => [id, spec]));
  const changing = inBackground(runChanges(stack, changePlans, terms, t0));
  const exclude = new Set([
    ...rows.filter((row) => row.spec.onHold).map((row) => row.id),
    ...changePlans.filter((plan) => plan.action === 'trocar').map((plan) => plan.id),
  ]);
  const reactivating = inBackground(
    reactivate
      ? reactivateHeld(stack, { exclude, seeded: terms, windowMs: 6_000, max: 2 })
      : Promise.resolve([]),
  );
  let lastFaultAt = t0;
  for (const event of events) {
    await sleepUntil(t0 + event.at);
    await inject(stack, event);
    lastFaultAt = Date.now();
  }
  const changes = await changing();
  changes.termsChanges.push(...(await reactivating()));
  await until(
    'every armed crash point to fire',
    async () =>
      stack.sup.armed.every((a) => a.firedIn !== undefined) || (await stack.busyJobs()) === 0
        ? true
        : undefined,
    60_000,
    250,
  ).catch(() => undefined);
  lastFaultAt = Math.max(lastFaultAt, ...stack.sup.exits.map((e) => e.at));
  return finishScenario(stack, {
    scenario: 'random',
    ctx,
    seeded: seededRows(rows),
    lastBusinessDate: due,
    lastFaultAt,
    startedAt,
    requiredGatewayKinds: ruled,
    minChargeRequests: Math.max(...positions),
    changes,
    // A cycle a pause kept from its charge, or a held one reactivated, is charged by the next morning's run.
    ...(changes.stops.some((stop) => stop.until !== null) || reactivate
      ? { nextDayRun: addDays(due, 1) }
      : {}),
  });
}
