// Phase 3 of the charge protocol: record what the gateway answered, in one short transaction per batch that
// also completes the jobs, fenced to the attempt of each job this worker holds. A job whose claim lapsed (it
// expired, or lost its heartbeat, and another worker took it over) gets nothing written here: its new holder
// reaches the same outcome through the same key and records it.
import type { DatabaseTransactionConnection } from 'slonik';
import { readDeclineFacts, recordApprovals, recordDeclines, type Approved } from '../../db/charge-batch.ts';
import {
  noteLateAnswers,
  moveNextChargePastPause,
  unpayableAmong,
  type Attempt,
} from '../../db/cobrancas.ts';
import { lockRecurrences, type Recurrence } from '../../db/recorrencias.ts';
import { nextCycle } from '../../domain/calendar.ts';
import { laterDate, type IsoDate } from '../../domain/dates.ts';
import { decideAfterDecline, type DeclineDecision } from '../../domain/retry-policy.ts';
import { isIrreversibleDecline } from '../../gateway/decline-codes.ts';
import type { ChargeOutcome } from '../../gateway/gateway.ts';
import { bossDb } from '../../queue/boss-executor.ts';
import { CHARGE_QUEUE } from '../../queue/task-names.ts';
import { enqueueChargeJobs } from './charge-jobs.ts';
import type { ChargeDeps, ChargeJob, ChargeResult } from './charge-recurrence.ts';
import { emitCheckoutEvents } from './checkout-events.ts';
import { crashPoint, mutantActive } from './test-hooks.ts';

/** The job ids pg-boss completed: the ones whose attempt this worker still held. */
function settledIds(response: object): Set<string> {
  const settled = (response as { settled?: unknown }).settled;
  return new Set(Array.isArray(settled) ? settled.map(String) : []);
}

export type Approval = { job: ChargeJob; attempt: Attempt; recurrence: Recurrence; chargeId: string };

export type Decline = {
  job: ChargeJob;
  attempt: Attempt;
  outcome: Extract<ChargeOutcome, { kind: 'declined' }>;
  /** The business date the retry backoff counts from. */
  today: IsoDate;
};

type DecidedDecline = {
  decline: Decline;
  decision: DeclineDecision;
  result: Extract<ChargeResult, { status: 'declined' }>;
};

type Completion = { output: object; jobs: Array<{ id: string; retryCount: number }> };

type Recorded = { approvals: ChargeResult[]; declines: ChargeResult[] };

/**
 * Thrown inside phase 3's transaction (rolling it back) when approvals turn out to be for attempts that can no
 * longer record them (blocked, or ended otherwise meanwhile): attempt id -> its status.
 */
class UnpayableApprovals extends Error {
  readonly attempts: ReadonlyMap<number, string>;
  constructor(attempts: ReadonlyMap<number, string>) {
    super('approvals of attempts blocked or ended meanwhile');
    this.attempts = attempts;
  }
}

/**
 * Records a batch's approvals and declines in one transaction (one commit per batch, whatever its mix):
 *  - with declines, locks every recurrence of the batch in id order, reads which declined attempts are still
 *    pending and decides what follows each decline (a retry on a later business date, or hold);
 *  - completes the jobs, fenced to the attempt of each job this worker holds, one statement per distinct
 *    output (an approval's, or a decline's code and decision);
 *  - only for the jobs still held: marks the attempts approved or declined, moves the recurrences, emits the
 *    checkout events and enqueues back-billing.
 * An approval of an attempt another holder blocked while the request was in flight (a 409 it got, or the key's
 * retention running out), or that was ended otherwise meanwhile (an operator's `nao_cobrada`), is not recorded
 * as paid: the attempt stays as it is with the gateway's charge id in its `mensagem`, and its job is not
 * completed (the caller dead-letters it, and logs an error). It shows only after the approvals statement (which
 * skips such attempts), so the usual batch pays nothing for it: the transaction is rolled back and run again
 * with those approvals set apart.
 * Returns one result per approval and per decline, in order. A failure rolls back all of it and throws; the
 * charge path calls it through recordEachOutcome, which then records each outcome on its own.
 */
export async function recordOutcomes(
  deps: ChargeDeps,
  batch: { approvals: Approval[]; declines: Decline[]; today: IsoDate },
): Promise<Recorded> {
  if (batch.approvals.length === 0 && batch.declines.length === 0) return { approvals: [], declines: [] };
  let setApart = new Map<number, string>();
  for (;;) {
    try {
      return await deps.pool.transaction((tx) => recordInTransaction(deps, tx, batch, setApart));
    } catch (error) {
      if (!(error instanceof UnpayableApprovals)) throw error;
      // Each pass sets at least one more approval apart: this ends.
      setApart = new Map([...setApart, ...error.attempts]);
    }
  }
}

async function recordInTransaction(
  deps: ChargeDeps,
  tx: DatabaseTransactionConnection,
  { approvals, declines, today }: { approvals: Approval[]; declines: Decline[]; today: IsoDate },
  setApart: ReadonlyMap<number, string>,
): Promise<Recorded> {
  const toRecord = approvals.filter(({ attempt }) => !setApart.has(attempt.id));
  const unpayable = approvals.filter(({ attempt }) => setApart.has(attempt.id));
  // Whatever is read or written before the approvals statement (which takes its own locks, in the same order)
  // comes after every recurrence lock of the batch, taken in id order: concurrent batches cannot deadlock.
  const recurrences =
    declines.length > 0 || unpayable.length > 0
      ? await lockRecurrences(
          tx,
          [...declines, ...approvals].map(({ attempt }) => attempt.recorrencia_id),
        )
      : new Map<number, Recurrence>();
  await noteLateAnswers(
    tx,
    unpayable.map(({ attempt, chargeId }) => ({
      attemptId: attempt.id,
      verb: 'aprovou',
      detail: `charge_id ${chargeId}`,
    })),
  );
  // null: the attempt was resolved elsewhere (or its recurrence is gone), so there is nothing to record.
  const { decided, ofBlocked } = await decideDeclines(deps, tx, declines, recurrences);
  // A decline for an attempt blocked meanwhile is not recorded either (only an operator resolves it), but it is
  // evidence for that resolution: nothing was charged under the key.
  await noteLateAnswers(
    tx,
    ofBlocked.map(({ attempt, outcome }) => ({
      attemptId: attempt.id,
      verb: 'recusou',
      detail: `código ${outcome.code}${outcome.chargeId === null ? '' : `, charge_id ${outcome.chargeId}`}`,
    })),
  );
  const settled = await completeJobs(deps, tx, toRecord, decided);
  const holds = (job: ChargeJob) => settled.has(job.id) || mutantActive('no_fence');

  const heldApprovals = toRecord.filter(({ job }) => holds(job));
  const byAttempt = await recordHeldApprovals(tx, heldApprovals);
  const heldDeclines = decided.filter(
    (entry): entry is DecidedDecline => entry !== null && holds(entry.decline.job),
  );
  const onHold = await recordHeldDeclines(tx, heldDeclines);
  await emitOutcomeEvents(deps, tx, heldApprovals, byAttempt, heldDeclines, onHold);
  await enqueueBackbilling(deps, tx, heldApprovals, byAttempt, today);
  crashPoint('in_phase3');
  const declinedBlocked = new Set(ofBlocked.map(({ attempt }) => attempt.id));
  return {
    approvals: approvals.map(({ job, attempt, chargeId }): ChargeResult => {
      const unpayableStatus = setApart.get(attempt.id);
      if (unpayableStatus === 'pendente')
        return { status: 'approved_but_blocked', attemptId: attempt.id, chargeId };
      if (unpayableStatus !== undefined)
        return {
          status: 'approved_but_ended',
          attemptId: attempt.id,
          chargeId,
          attemptStatus: unpayableStatus,
        };
      if (!holds(job)) return { status: 'claim_lost', attemptId: attempt.id };
      if (!byAttempt.has(attempt.id)) return { status: 'resolved_elsewhere', attemptId: attempt.id };
      return {
        status: 'approved',
        attemptId: attempt.id,
        key: attempt.chave_idempotencia,
        cycle: attempt.ciclo,
        amountCents: attempt.valor_centavos,
      };
    }),
    declines: declines.map((decline, i): ChargeResult => {
      const entry = decided[i];
      if (declinedBlocked.has(decline.attempt.id))
        return { status: 'declined_but_blocked', attemptId: decline.attempt.id, code: decline.outcome.code };
      if (entry === null || entry === undefined)
        return { status: 'resolved_elsewhere', attemptId: decline.attempt.id };
      if (!holds(decline.job)) return { status: 'claim_lost', attemptId: decline.attempt.id };
      return entry.result;
    }),
  };
}

/**
 * The fence: completes the jobs of the approvals and of the decided declines, one statement per distinct
 * output. pg-boss completes only a job still active under the claim (id and retry count) this worker took;
 * returns the ids it completed, the jobs whose outcomes this transaction may record.
 */
async function completeJobs(
  deps: ChargeDeps,
  tx: DatabaseTransactionConnection,
  approvals: Approval[],
  decided: Array<DecidedDecline | null>,
): Promise<Set<string>> {
  const completions: Completion[] = [];
  if (approvals.length > 0)
    completions.push({ output: { status: 'approved' }, jobs: approvals.map(({ job }) => claimOf(job)) });
  completions.push(...declineCompletions(decided));
  const settled = new Set<string>();
  for (const { output, jobs } of completions) {
    const response = await deps.boss.complete(CHARGE_QUEUE, jobs, output, { db: bossDb(tx) });
    for (const id of settledIds(response)) settled.add(id);
  }
  return settled;
}

/**
 * Marks the held approvals' attempts approved and moves their recurrences to the next cycle (past a pause's
 * cycles). Throws UnpayableApprovals when some attempt was blocked or ended meanwhile (the transaction is run
 * again without them). Returns the recorded rows by attempt id; one missing was resolved elsewhere.
 */
async function recordHeldApprovals(
  tx: DatabaseTransactionConnection,
  held: Approval[],
): Promise<Map<number, Approved>> {
  const approved = await recordApprovals(
    tx,
    held.map(({ attempt, recurrence, chargeId }) => ({
      attemptId: attempt.id,
      recurrenceId: attempt.recorrencia_id,
      gatewayRef: chargeId,
      nextCycle: nextCycle(attempt.ciclo, recurrence),
    })),
  );
  if (approved.length < held.length) {
    const recordedIds = new Set(approved.map((row) => row.attempt_id));
    const newlyUnpayable = await unpayableAmong(
      tx,
      held.map(({ attempt }) => attempt.id).filter((id) => !recordedIds.has(id)),
    );
    if (newlyUnpayable.size > 0) throw new UnpayableApprovals(newlyUnpayable);
  }
  const schedules = new Map(held.map(({ attempt, recurrence }) => [attempt.id, recurrence]));
  return new Map((await skipCyclesOfPause(tx, approved, schedules)).map((row) => [row.attempt_id, row]));
}

/** Marks the held declines' attempts declined and applies each decision; returns the recurrences put on hold. */
async function recordHeldDeclines(
  tx: DatabaseTransactionConnection,
  held: DecidedDecline[],
): Promise<Set<number>> {
  return recordDeclines(
    tx,
    held.map(({ decline, decision }) => ({
      attemptId: decline.attempt.id,
      recurrenceId: decline.attempt.recorrencia_id,
      gatewayRef: decline.outcome.chargeId,
      code: decline.outcome.code,
      reversible: decline.outcome.reversible,
      message: decline.outcome.message,
      retryOn: decision.kind === 'retry' ? decision.retryOn : null,
      holdReason: decision.kind === 'hold' ? decision.reason : null,
    })),
  );
}

/** The checkout's events of what was recorded: each approval (and an end), each decline (and a hold). */
async function emitOutcomeEvents(
  deps: ChargeDeps,
  tx: DatabaseTransactionConnection,
  approvals: Approval[],
  approved: ReadonlyMap<number, Approved>,
  declines: DecidedDecline[],
  onHold: ReadonlySet<number>,
): Promise<void> {
  await emitCheckoutEvents(deps, tx, [
    ...approvals.flatMap(({ attempt }) => {
      const row = approved.get(attempt.id);
      if (row === undefined) return [];
      return [
        { attempt, type: 'cobranca_aprovada' as const },
        { attempt, type: row.concluida ? ('recorrencia_concluida' as const) : null },
      ];
    }),
    ...declines.flatMap(({ decline }) => [
      { attempt: decline.attempt, type: 'cobranca_recusada' as const },
      {
        attempt: decline.attempt,
        type: onHold.has(decline.attempt.recorrencia_id) ? ('recorrencia_em_hold' as const) : null,
      },
    ]),
  ]);
}

/**
 * recordOutcomes, never throwing: when the batch's transaction fails, each outcome is recorded again in a
 * transaction of its own, so that one the database refuses fails alone (its job retries and resumes its
 * attempt) and its neighbours' approvals and declines are kept. With the database down, each fails again.
 */
export async function recordEachOutcome(
  deps: ChargeDeps,
  batch: { approvals: Approval[]; declines: Decline[]; today: IsoDate },
): Promise<Recorded> {
  const { approvals, declines, today } = batch;
  const failed = (error: unknown): ChargeResult => ({ status: 'failed', reason: (error as Error).message });
  const context = (jobs: Array<Approval | Decline>) => ({
    jobs: jobs.map(({ job }) => job.id),
    recurrences: jobs.map(({ job }) => job.data.recorrenciaId),
  });
  try {
    return await recordOutcomes(deps, batch);
  } catch (error) {
    if (approvals.length + declines.length === 1) {
      deps.log.error(
        { err: error, ...context([...approvals, ...declines]) },
        'could not record the outcome: its job will retry and resume the attempt',
      );
      return { approvals: approvals.map(() => failed(error)), declines: declines.map(() => failed(error)) };
    }
    deps.log.warn(
      { err: error, ...context([...approvals, ...declines]) },
      "could not record the batch's outcomes together: recording each on its own",
    );
  }
  const recorded: Recorded = { approvals: [], declines: [] };
  for (const approval of approvals) {
    const alone = await recordEachOutcome(deps, { approvals: [approval], declines: [], today });
    recorded.approvals.push(...alone.approvals);
  }
  for (const decline of declines) {
    const alone = await recordEachOutcome(deps, { approvals: [], declines: [decline], today });
    recorded.declines.push(...alone.declines);
  }
  return recorded;
}

export function claimOf(job: ChargeJob): { id: string; retryCount: number } {
  return { id: job.id, retryCount: job.retryCount };
}

/**
 * Under the recurrence locks (all of the batch's, taken in id order by the caller: `recurrences`), reads which
 * declined attempts are still pending and decides what follows each decline. One entry per decline, null
 * where there is nothing to record. Without declines it reads nothing.
 */
async function decideDeclines(
  deps: ChargeDeps,
  tx: DatabaseTransactionConnection,
  declines: Decline[],
  recurrences: ReadonlyMap<number, Recurrence>,
): Promise<{ decided: Array<DecidedDecline | null>; ofBlocked: Decline[] }> {
  if (declines.length === 0) return { decided: [], ofBlocked: [] };
  const policy = {
    backoffDays: deps.config.billing.retryBackoffDays,
    maxDeclinesBeforeHold: deps.config.billing.maxDeclinesBeforeHold,
    brandLimits30d: deps.config.billing.brandRetryLimits30d,
  };
  const facts = await readDeclineFacts(
    tx,
    declines.map(({ attempt }) => attempt.id),
  );
  const ofBlocked = declines.filter(({ attempt }) => facts.get(attempt.id)?.blocked === true);
  const decided = declines.map((decline) => {
    const recurrence = recurrences.get(decline.attempt.recorrencia_id);
    const fact = facts.get(decline.attempt.id);
    if (recurrence === undefined || fact?.pending !== true) return null;
    const decision = decideAfterDecline(policy, {
      consecutiveDeclines: recurrence.falhas_consecutivas + 1,
      irreversible: isIrreversibleDecline(decline.outcome),
      code: decline.outcome.code,
      brand: recurrence.bandeira,
      attemptsLast30Days: fact.sentLast30Days,
      today: decline.today,
    });
    const result = {
      status: 'declined',
      attemptId: decline.attempt.id,
      key: decline.attempt.chave_idempotencia,
      cycle: decline.attempt.ciclo,
      code: decline.outcome.code,
      decision: decision.kind,
    } as const;
    return { decline, decision, result };
  });
  return { decided, ofBlocked };
}

/**
 * The declines' job completions, one per distinct output: a batch's declines mostly share a code and a
 * decision. The output carries the decision; the attempt itself is found through the job id.
 */
function declineCompletions(decided: Array<DecidedDecline | null>): Completion[] {
  const groups = new Map<string, Completion>();
  for (const entry of decided) {
    if (entry === null) continue;
    const { kind, ...details } = entry.decision;
    const output = { status: 'declined', code: entry.result.code, decision: kind, ...details };
    const key = JSON.stringify(output);
    const group = groups.get(key) ?? { output, jobs: [] };
    group.jobs.push(claimOf(entry.decline.job));
    groups.set(key, group);
  }
  return [...groups.values()];
}

/**
 * An approval of a charge that was still in flight at `retomar` moves its recurrence to the cycle after its
 * own, which may have fallen in the pause: as the resume does when nothing is in flight, that cycle moves to
 * the first one on or after the resume's date and the ones in between are recorded as skipped. `schedules`:
 * each approved attempt's recurrence as read before the approval (its schedule cannot change while an attempt
 * is pending). Returns the rows with their final next cycle. Also for an approval an operator records.
 */
export async function skipCyclesOfPause(
  tx: DatabaseTransactionConnection,
  approved: readonly Approved[],
  schedules: ReadonlyMap<number, Recurrence>,
): Promise<Approved[]> {
  const rows: Approved[] = [];
  for (const row of approved) {
    const schedule = schedules.get(row.attempt_id);
    const next =
      row.concluida || schedule === undefined
        ? null
        : await moveNextChargePastPause(tx, {
            periodicidade: schedule.periodicidade,
            dia_ancora: schedule.dia_ancora,
            id: row.recorrencia_id,
            proxima_cobranca: row.proxima_cobranca,
            cobrar_a_partir_de: row.cobrar_a_partir_de,
            pausada_desde: row.pausada_desde,
            pausas_anteriores: row.pausas_anteriores,
          });
    rows.push(next === null ? row : { ...row, proxima_cobranca: next });
  }
  return rows;
}

/** Back-billing: the next missed cycle of a recurrence is charged right away, by a job committed with the approval. */
async function enqueueBackbilling(
  deps: ChargeDeps,
  tx: DatabaseTransactionConnection,
  held: Approval[],
  recorded: Map<number, Approved>,
  today: IsoDate,
): Promise<void> {
  if (!deps.config.billing.backbillMissedCycles) return;
  const next = held.flatMap(({ attempt, job }) => {
    const row = recorded.get(attempt.id);
    // Up to this charge's own date (a run for a later date charges up to it), never another job's of the batch.
    const until = laterDate(today, job.data.dataNegocio);
    return row?.status === 'ativo' && row.proxima_cobranca <= until
      ? [
          {
            recorrenciaId: attempt.recorrencia_id,
            dataNegocio: until,
            motivo: 'retroativa' as const,
            ciclo: row.proxima_cobranca,
          },
        ]
      : [];
  });
  await enqueueChargeJobs(deps.boss, next, { db: tx });
}
