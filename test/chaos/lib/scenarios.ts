// The targeted scenarios: every crash point, each gateway fault kind, Postgres restarts and a start while it
// is down, two schedulers racing for a missed tick, a frozen worker whose late commit the fence must refuse,
// and after-execution gateway faults (the ones a fresh key would turn into a second charge). The frozen
// worker is in scenario-frozen-worker.ts.
import { addDays } from '../../../src/domain/dates.ts';
import { FAULT_KINDS } from '../../../src/gateway/fake-gateway.ts';
import type { Violation } from './checker.ts';
import { query, terminateServiceBackends } from './cluster.ts';
import { GATEWAY_TIMEOUT_MS } from './env.ts';
import type { FaultPlan } from './gateway-client.ts';
import {
  finishScenario,
  generateRecurrences,
  seededRows,
  type ScenarioContext,
  type ScenarioResult,
} from './scenario-common.ts';
import { createStack, type Stack } from './stack.ts';
import { runChanges, type ChangePlan } from './checkout-changes.ts';
import { inBackground, until } from './wait.ts';

export const DAY = '2031-03-10';
const PROCESSAR = 'processar_recorrencias_do_dia';

export async function openStack(
  ctx: ScenarioContext,
  name: string,
  options: Parameters<typeof createStack>[0]['gateway'] = {},
  workerEnv: Record<string, string> = {},
): Promise<Stack> {
  const stack = await createStack({
    cluster: ctx.cluster,
    name: `${name}_${ctx.seed}`.replaceAll('-', '_'),
    runDir: ctx.runDir,
    gateway: { seed: ctx.seed, ...options },
    workerEnv: {
      ...(ctx.mutants === undefined ? {} : { RECORRENCIAS_TEST_MUTANTS: ctx.mutants }),
      ...workerEnv,
    },
  });
  if (ctx.dropApprovedIndex === true) {
    await query(stack.url, 'DROP INDEX checkout_recorrencia_cobrancas_uma_aprovada_por_ciclo');
    stack.note('db:unique_index_dropped');
  }
  return stack;
}

const ledgerCount = async (stack: Stack) => (await stack.gateway.ledger()).length;

/** Each gateway fault kind once (rules at seeded positions), with timings that make each mean what it says. */
export function everyKindPlan(ctx: ScenarioContext, firstNth: number): FaultPlan {
  const kinds = ctx.rng.fork('gateway-kinds').sample(
    FAULT_KINDS.filter((kind) => kind !== 'hold'),
    FAULT_KINDS.length,
  );
  return {
    rules: kinds.map((fault, i) => ({ nth: firstNth + 2 * i, fault })),
    holdMs: GATEWAY_TIMEOUT_MS + 1_000,
    delayMs: 300,
  };
}

/**
 * Five recurrences whose charge job is queued and not yet taken, changed at once: one cancelled, one paused
 * for good, two paused and resumed a few seconds later, one given a new amount and card. Cards the gateway
 * always approves, so nothing holds them first and every change takes effect; queued, so their charge comes
 * while (or after) they are changed.
 */
async function changesOfQueuedCharges(
  stack: Stack,
  ctx: ScenarioContext,
  rows: Array<{ id: number; spec: { token: string } }>,
): Promise<ChangePlan[]> {
  const approving = rows.filter((row) => row.spec.token.startsWith('tok_aprova_')).map((row) => row.id);
  const queued = await until(
    'five approving recurrences with a queued charge',
    async () => {
      const found = await query<{ id: number }>(
        stack.url,
        `SELECT (data->>'recorrenciaId')::int AS id FROM pgboss.job
         WHERE name = 'cobrar_recorrencia' AND state = 'created' AND (data->>'recorrenciaId')::int = ANY($1::int[])
         ORDER BY 1`,
        [approving],
      );
      return found.length >= 5 ? found.map((row) => row.id) : undefined;
    },
    60_000,
    50,
  );
  const rng = ctx.rng.fork('status-changes');
  type Five = [number, number, number, number, number];
  const [changed, cancelled, paused, resumed1, resumed2] = rng.sample(queued, 5) as Five;
  return [
    {
      id: changed,
      at: 0,
      action: 'trocar',
      amountCents: rng.int(100, 99_999),
      token: `tok_aprova_${changed}_trocado`,
    },
    { id: cancelled, at: 0, action: 'cancelar', resumeAfter: null },
    { id: paused, at: 0, action: 'pausar', resumeAfter: null },
    { id: resumed1, at: 0, action: 'pausar', resumeAfter: rng.int(1_000, 4_000) },
    { id: resumed2, at: 0, action: 'pausar', resumeAfter: rng.int(1_000, 4_000) },
  ];
}

/**
 * Every crash point once, across two workers, with every gateway fault kind and a backend termination; and
 * meanwhile the checkout cancels a recurrence, pauses three (resuming two) and changes one's amount and card.
 */
export async function crashPointsScenario(ctx: ScenarioContext): Promise<ScenarioResult> {
  const startedAt = Date.now();
  const stack = await openStack(ctx, 'crash_points', { latencyMs: 60 });
  const rows = await stack.seed(generateRecurrences(ctx.rng, { count: 40, due: DAY, holds: 2 }));
  const plan = everyKindPlan(ctx, 3);
  await stack.gateway.setFaults(plan);
  await Promise.all([stack.startRole('scheduler1', 'scheduler'), stack.startRole('admin', 'admin')]);
  // w1 alone takes the run's job, so the fan-out crash point is reached by it; then it charges.
  const w1Arms = [
    'fanout_after_page:1',
    ...ctx.rng.sample(['after_phase1:1', 'in_phase3:1', 'before_phase1:2'], 2),
  ];
  const all = ['before_phase1', 'after_phase1', 'after_gateway', 'in_phase3', 'after_commit'];
  const w2Arms = all
    .filter((point) => !w1Arms.some((arm) => arm.startsWith(`${point}:`)))
    .map((point) => `${point}:1`);
  await stack.startRole('worker1', 'worker', { arms: w1Arms });
  await stack.runTask(PROCESSAR, DAY);
  await until(
    'the fan-out crash point',
    () => (stack.sup.exits.some((e) => e.crashPoint === 'fanout_after_page') ? true : undefined),
    60_000,
  );
  const terms = new Map(rows.map(({ id, spec }) => [id, spec]));
  const changing = inBackground(
    runChanges(stack, await changesOfQueuedCharges(stack, ctx, rows), terms, Date.now()),
  );
  await stack.startRole('worker2', 'worker', { arms: w2Arms });
  await until(
    '15 charges at the gateway',
    async () => ((await ledgerCount(stack)) >= 15 ? true : undefined),
    60_000,
  );
  stack.note('pg:terminate_backends', await terminateServiceBackends(stack.url));
  let lastFaultAt = Date.now();
  await until(
    'every armed crash point to fire',
    () => (stack.sup.armed.every((a) => a.firedIn !== undefined) ? true : undefined),
    120_000,
    250,
  ).catch(() => undefined);
  lastFaultAt = Math.max(lastFaultAt, ...stack.sup.exits.map((e) => e.at));
  const requiredGatewayKinds = plan.rules?.map((rule) => rule.fault) ?? [];
  return finishScenario(stack, {
    scenario: 'crash-points',
    ctx,
    seeded: seededRows(rows),
    lastBusinessDate: DAY,
    lastFaultAt,
    startedAt,
    requiredGatewayKinds,
    minChargeRequests: Math.max(...(plan.rules ?? []).map((r) => r.nth)),
    changes: await changing(),
    nextDayRun: addDays(DAY, 1),
  });
}

/** Postgres restarted fast and immediate mid-run, backends terminated, roles (re)started while it is down. */
export async function postgresScenario(ctx: ScenarioContext): Promise<ScenarioResult> {
  const startedAt = Date.now();
  const stack = await openStack(ctx, 'postgres', { latencyMs: 150 });
  const rows = await stack.seed(generateRecurrences(ctx.rng, { count: 50, due: DAY }));
  await stack.gateway.setFaults({
    random: {
      seed: ctx.seed,
      rate: 0.1,
      kinds: ['timeout_after', 'reset_before', 'error_500_after'],
      holdMs: GATEWAY_TIMEOUT_MS + 1_000,
    },
  });
  await Promise.all([
    stack.startRole('scheduler1', 'scheduler'),
    stack.startRole('admin', 'admin'),
    stack.startRole('worker1', 'worker'),
    stack.startRole('worker2', 'worker'),
  ]);
  const server = stack.cluster.pg;
  await stack.runTask(PROCESSAR, DAY);
  await until('8 charges', async () => ((await ledgerCount(stack)) >= 8 ? true : undefined), 60_000, 100);
  await server.restart('fast');
  stack.note('pg:restart_fast');
  await until('20 charges', async () => ((await ledgerCount(stack)) >= 20 ? true : undefined), 90_000, 100);
  stack.note('pg:terminate_backends', await terminateServiceBackends(stack.url));
  await until('30 charges', async () => ((await ledgerCount(stack)) >= 30 ? true : undefined), 90_000, 100);
  await server.restart('immediate');
  stack.note('pg:restart_immediate');
  // Down: kill a worker and start a new scheduler; both must wait for the database, then come up.
  await server.stop();
  const worker1 = stack.sup.slots.get('worker1');
  const from = (worker1?.incarnation() ?? 0) + 1;
  await worker1?.kill9();
  const scheduler2 = await stack.startRole('scheduler2', 'scheduler', { wait: false });
  const waiting = (line: { msg?: string }) => line.msg === 'database unreachable, waiting';
  await Promise.all([worker1?.waitForLog(waiting, 30_000, from), scheduler2.waitForLog(waiting, 30_000)]);
  await server.restart('fast');
  stack.note('pg:down_start');
  const lastFaultAt = Date.now();
  await Promise.all([
    worker1?.waitForLog((l) => l.msg === 'worker started', 60_000, from),
    scheduler2.waitForLog((l) => l.msg === 'scheduler started', 60_000),
  ]);
  return finishScenario(stack, {
    scenario: 'postgres',
    ctx,
    seeded: seededRows(rows),
    lastBusinessDate: DAY,
    lastFaultAt,
    startedAt,
  });
}

/** Two schedulers started at once after a missed tick: exactly one job and one run for that occurrence. */
export async function schedulerRaceScenario(ctx: ScenarioContext): Promise<ScenarioResult> {
  const startedAt = Date.now();
  const stack = await openStack(ctx, 'scheduler_race');
  const first = await stack.startRole('scheduler0', 'scheduler');
  await first.stop();
  // The tick fell three minutes ago, while every scheduler was down (as in test/tasks/processes.test.ts).
  const [tick] = await query<{ minute: number; hour: number; day: string }>(
    stack.url,
    `SELECT extract(minute FROM t)::int AS minute, extract(hour FROM t)::int AS hour, t::date::text AS day
     FROM (SELECT (now() - interval '3 minutes') AT TIME ZONE 'America/Sao_Paulo' AS t) x`,
  );
  if (tick === undefined) throw new Error('no tick');
  const cron = `${tick.minute} ${tick.hour} * * *`;
  await query(stack.url, `UPDATE pgboss.version SET cron_on = now() - interval '10 minutes'`);
  await query(
    stack.url,
    `UPDATE pgboss.schedule SET created_on = now() - interval '2 days', cron = $1 WHERE name = $2`,
    [cron, PROCESSAR],
  );
  const rows = await stack.seed(generateRecurrences(ctx.rng, { count: 12, due: tick.day }));
  const env = { CRON_PROCESSAR_RECORRENCIAS_DO_DIA: cron };
  await stack.startRole('worker1', 'worker', { env });
  const racedAt = Date.now();
  await Promise.all([
    stack.startRole('scheduler1', 'scheduler', { env }),
    stack.startRole('scheduler2', 'scheduler', { env }),
  ]);
  stack.note('race:two_schedulers_one_tick');
  const extra: Violation[] = [];
  const job = await until(
    'the catch-up job',
    async () =>
      (
        await query<{ created: number }>(
          stack.url,
          `SELECT (extract(epoch FROM created_on) * 1000)::float8 AS created FROM pgboss.job WHERE name = $1`,
          [PROCESSAR],
        )
      )[0],
    60_000,
    250,
  );
  // Both schedulers keep checking every 2 s: wait for a few passes after the job, then count.
  await until(
    'three more cron passes',
    async () => {
      const [row] = await query<{ on: number }>(
        stack.url,
        `SELECT (extract(epoch FROM cron_on) * 1000)::float8 AS on FROM pgboss.version`,
      );
      return row !== undefined && row.on > job.created + 6_000 ? true : undefined;
    },
    60_000,
    500,
  );
  await until(
    'the run to succeed',
    async () =>
      (await query(stack.url, `SELECT 1 FROM execucoes_tarefas WHERE status = 'sucesso'`)).length > 0
        ? true
        : undefined,
    60_000,
    250,
  );
  const jobs = await query(stack.url, `SELECT id FROM pgboss.job WHERE name = $1`, [PROCESSAR]);
  const runs = await query<{ data_negocio: string }>(
    stack.url,
    `SELECT data_negocio::text FROM execucoes_tarefas WHERE tarefa = $1`,
    [PROCESSAR],
  );
  if (jobs.length !== 1)
    extra.push({ kind: 'scenario', detail: `${jobs.length} jobs for one missed tick (two schedulers)` });
  if (runs.length !== 1 || runs[0]?.data_negocio !== tick.day)
    extra.push({
      kind: 'scenario',
      detail: `runs for the tick: ${JSON.stringify(runs)} (expected one for ${tick.day})`,
    });
  return finishScenario(stack, {
    scenario: 'scheduler-race',
    ctx,
    seeded: seededRows(rows),
    lastBusinessDate: tick.day,
    lastFaultAt: racedAt,
    startedAt,
    extra,
  });
}

/** Gateway faults after execution (the charge went through, the answer was lost), nothing else. */
export async function afterExecutionScenario(ctx: ScenarioContext): Promise<ScenarioResult> {
  const startedAt = Date.now();
  const stack = await openStack(ctx, 'after_execution', { latencyMs: 20 });
  const rows = await stack.seed(
    generateRecurrences(ctx.rng, { count: 10, due: DAY, tokens: [['tok_aprova', 1]] }),
  );
  const kinds = ['timeout_after', 'reset_after', 'error_500_after'] as const;
  await stack.gateway.setFaults({
    rules: [1, 2, 3, 4, 5, 6].map((nth, i) => ({ nth, fault: kinds[i % 3] ?? 'timeout_after' })),
    holdMs: GATEWAY_TIMEOUT_MS + 1_000,
  });
  await Promise.all([
    stack.startRole('admin', 'admin'),
    stack.startRole('worker1', 'worker'),
    stack.startRole('worker2', 'worker'),
  ]);
  await stack.runTask(PROCESSAR, DAY);
  await until(
    'six charge requests',
    async () => ((await stack.gateway.stats()).charge_requests >= 6 ? true : undefined),
    60_000,
    100,
  );
  return finishScenario(stack, {
    scenario: 'after-execution',
    ctx,
    seeded: seededRows(rows),
    lastBusinessDate: DAY,
    lastFaultAt: Date.now(),
    startedAt,
    requiredGatewayKinds: kinds,
    minChargeRequests: 6,
  });
}
