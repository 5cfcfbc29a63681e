// What every scenario shares: the seeded data set, the end of a run (stop injecting, wait for quiet within
// the recovery bound, stop the roles, snapshot, check) and the result it reports.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { dateParts, daysInMonth, type IsoDate } from '../../../src/domain/dates.ts';
import type { ChangesMade } from './checkout-changes.ts';
import { check, type SeededRecurrence, type Verdict, type Violation } from './checker.ts';
import { query, type Cluster } from './cluster.ts';
import type { Rng } from './prng.ts';
import { takeSnapshot } from './snapshot.ts';
import type { RecurrenceSpec, Stack } from './stack.ts';
import { until } from './wait.ts';

/** The bound the suite holds the service to: every job terminal this long after the last fault (measured: see README of the suite). */
export const RECOVERY_BOUND_MS = 60_000;

export type ScenarioContext = {
  cluster: Cluster;
  runDir: string;
  seed: number;
  rng: Rng;
  /** RECORRENCIAS_TEST_MUTANTS for the workers (mutation testing of the suite itself). */
  mutants?: string;
  /** Drop the unique index on approved attempts before the run (the suite owns the database). */
  dropApprovedIndex?: boolean;
  /** Runs once the system is quiet, before the end state is read (the mutation runs' extra writers). */
  beforeCheck?: (stack: Stack) => Promise<void>;
};

export type ScenarioResult = {
  scenario: string;
  seed: number;
  verdict: Verdict;
  /** Faults injected (and confirmed) by kind. */
  faults: Record<string, number>;
  recoveryMs: number | undefined;
  wallMs: number;
  runDir: string;
};

const PERIODS = ['mensal', 'mensal', 'mensal', 'semanal', 'trimestral', 'anual'] as const;

/** `count` active recurrences due on `due` (plus `holds` on hold), with a seeded mix of tokens and calendars. */
export function generateRecurrences(
  rng: Rng,
  options: { count: number; due: IsoDate; holds?: number; tokens?: Array<[string, number]> },
): RecurrenceSpec[] {
  const tokens = options.tokens ?? [
    ['tok_aprova', 6],
    ['tok_mix', 3],
    ['tok_recusa_reversivel', 1],
    ['tok_recusa_irreversivel', 1],
  ];
  const weight = tokens.reduce((sum, [, w]) => sum + w, 0);
  const { year, month, day } = dateParts(options.due);
  const lastDay = day === daysInMonth(year, month);
  const specs: RecurrenceSpec[] = [];
  for (let i = 0; i < options.count + (options.holds ?? 0); i++) {
    let draw = rng.next() * weight;
    const token = tokens.find(([, w]) => (draw -= w) < 0)?.[0] ?? 'tok_aprova';
    const periodicidade = rng.pick(PERIODS);
    // On a month's last day any anchor from that day to 31 lands here: the calendar must clamp, not drift.
    const diaAncora = periodicidade === 'semanal' ? null : lastDay ? rng.int(day, 31) : day;
    specs.push({
      token: `${token}_${i}`,
      amountCents: rng.int(100, 99_999),
      periodicidade,
      diaAncora,
      due: options.due,
      onHold: i >= options.count,
    });
  }
  return specs;
}

export function seededRows(rows: Array<{ id: number; spec: RecurrenceSpec }>): SeededRecurrence[] {
  return rows.map(({ id, spec }) => ({
    id,
    proxima_cobranca: spec.due,
    status: spec.onHold ? 'hold' : 'ativo',
    ciclos_cobrados: 0,
  }));
}

/**
 * Ends a scenario: stops the gateway faults, waits for quiet (every job terminal, no attempt pending;
 * dead letters redriven) within the recovery bound, stops every role, then checks the end state.
 */
export async function finishScenario(
  stack: Stack,
  options: {
    scenario: string;
    ctx: ScenarioContext;
    seeded: SeededRecurrence[];
    lastBusinessDate: IsoDate;
    lastFaultAt: number;
    startedAt: number;
    extra?: Violation[];
    /** Gateway fault kinds scripted by rule: each must have fired by the end. */
    requiredGatewayKinds?: readonly string[];
    /** The position of the last scripted gateway fault: injection goes on at least until then. */
    minChargeRequests?: number;
    /** What the checkout changed during the run (see checkout-changes.ts). */
    changes?: ChangesMade;
    /**
     * Once quiet, run processar_recorrencias_do_dia for this date and wait for quiet again (what the next
     * morning does for a cycle a pause kept from its own day's run); the checker then settles up to it.
     */
    nextDayRun?: IsoDate;
  },
): Promise<ScenarioResult> {
  const violations: Violation[] = [...(options.extra ?? [])];
  // The fault window stays open until the scripted gateway faults have had their requests and every due
  // recurrence has been tried once (or nothing is left to run); then injection stops and recovery is timed.
  const active = options.seeded.filter((r) => r.status === 'ativo').length;
  await until(
    'the fault window to be used',
    async () => {
      const stats = await stack.gateway.stats();
      const [row] = await query<{ n: number }>(
        stack.url,
        `SELECT count(DISTINCT recorrencia_id)::int AS n FROM checkout_recorrencia_cobrancas`,
      );
      const used = stats.charge_requests >= (options.minChargeRequests ?? 0) && (row?.n ?? 0) >= active;
      return used || (await stack.busyJobs()) === 0 ? true : undefined;
    },
    60_000,
    250,
  ).catch(() => undefined);
  await stack.gateway.clearFaults().catch(() => undefined);
  // Recovery is timed from the last fault of any kind: a harness action, a crash, a gateway fault applied.
  const gatewayFaultTimes = (stack.sup.slots.get('gateway')?.lines ?? [])
    .filter((line) => line.msg === 'fake gateway fault')
    .map((line) => Date.parse(String(line.time)));
  const lastFaultAt = Math.max(
    options.lastFaultAt,
    ...stack.sup.exits.map((e) => e.at),
    ...gatewayFaultTimes,
  );
  let recoveryMs: number | undefined;
  try {
    const { quietAt } = await stack.settle(RECOVERY_BOUND_MS);
    recoveryMs = Math.max(0, quietAt - lastFaultAt);
  } catch (error) {
    violations.push({
      kind: 'scenario',
      detail: `not quiet within ${RECOVERY_BOUND_MS} ms: ${(error as Error).message}`,
    });
  }
  if (options.nextDayRun !== undefined && recoveryMs !== undefined) {
    await stack.runTask('processar_recorrencias_do_dia', options.nextDayRun);
    stack.note('run:next_day');
    await stack.settle(RECOVERY_BOUND_MS).catch((error: unknown) =>
      violations.push({
        kind: 'scenario',
        detail: `the next day's run was not quiet within ${RECOVERY_BOUND_MS} ms: ${(error as Error).message}`,
      }),
    );
  }
  const stats = await stack.gateway.stats().catch(() => undefined);
  await writeFile(join(stack.runDir, 'gateway-stats.json'), JSON.stringify(stats ?? null, null, 2));
  for (const [kind, n] of Object.entries(stats?.faults ?? {})) stack.note(`gateway:${kind}`, n);
  for (const kind of options.requiredGatewayKinds ?? []) {
    if ((stats?.faults[kind as keyof typeof stats.faults] ?? 0) === 0)
      violations.push({ kind: 'scenario', detail: `scripted gateway fault ${kind} never fired` });
  }
  await stack.stop();
  if (options.ctx.beforeCheck !== undefined) await options.ctx.beforeCheck(stack);
  for (const exit of stack.sup.exits) {
    if (exit.cause === 'crash_point') stack.note(`crash:${exit.crashPoint}`);
    if (exit.cause === 'harness_kill') stack.note(`kill9:${exit.slot.replace(/\d+$/, '')}`);
  }
  for (const armed of stack.sup.armed) {
    // A planned kill9 can land on the armed worker before its point comes up, and the other workers can then
    // drain the queue before it is back: the plan's own faults met, not a point the service skipped.
    if (armed.firedIn === undefined && (armed.preemptedByKill ?? 0) > 0) stack.note('arm_preempted_by_kill9');
    else if (armed.firedIn === undefined)
      violations.push({
        kind: 'scenario',
        detail: `armed crash point ${armed.arm} on ${armed.slot} never fired`,
      });
  }
  const lastBusinessDate = options.nextDayRun ?? options.lastBusinessDate;
  const verdict = check(await takeSnapshot(stack, options.seeded, lastBusinessDate, options.changes));
  verdict.violations.unshift(...violations);
  await stack.cluster.dropDatabase(stack.name).catch(() => undefined);
  return {
    scenario: options.scenario,
    seed: options.ctx.seed,
    verdict,
    faults: Object.fromEntries([...stack.faults].sort(([a], [b]) => a.localeCompare(b))),
    recoveryMs,
    wallMs: Date.now() - options.startedAt,
    runDir: stack.runDir,
  };
}
