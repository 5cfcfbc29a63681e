// Phase 3 of the charge protocol: record what the gateway answered, in short transactions (one for a batch's
// approvals, one for its declines) that also complete the jobs, fenced to the attempt of each job this worker
// holds. A job whose claim lapsed (it expired, or lost its heartbeat, and another worker took it over) gets
// nothing written here: its new holder reaches the same outcome through the same key and records it.
import type { DatabaseTransactionConnection } from 'slonik';
import { recordApprovals } from '../../db/charge-batch.ts';
import {
  countAttemptsSentLast30Days,
  declineAttempts,
  pendingAttemptIds,
  type Attempt,
} from '../../db/cobrancas.ts';
import {
  lockRecurrence,
  lockRecurrences,
  markDeclinedForRetry,
  markOnHold,
  type Recurrence,
} from '../../db/recorrencias.ts';
import { nextCycle } from '../../domain/calendar.ts';
import type { IsoDate } from '../../domain/dates.ts';
import { decideAfterDecline } from '../../domain/retry-policy.ts';
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

/**
 * Records approvals (one or a whole batch) in one transaction: completes the jobs fenced to their attempts,
 * then, for the jobs still held, marks the attempts approved and moves each recurrence to its next cycle.
 * Returns one result per approval, in order.
 */
export async function recordApprovalOutcomes(
  deps: ChargeDeps,
  approvals: Approval[],
  today: IsoDate,
): Promise<ChargeResult[]> {
  if (approvals.length === 0) return [];
  return deps.pool.transaction(async (tx) => {
    const response = await deps.boss.complete(
      CHARGE_QUEUE,
      approvals.map(({ job }) => ({ id: job.id, retryCount: job.retryCount })),
      { status: 'approved' },
      { db: bossDb(tx) },
    );
    const settled = settledIds(response);
    const held = approvals.filter(({ job }) => settled.has(job.id) || mutantActive('no_fence'));
    const recorded = await recordApprovals(
      tx,
      held.map(({ attempt, recurrence, chargeId }) => ({
        attemptId: attempt.id,
        recurrenceId: attempt.recorrencia_id,
        gatewayRef: chargeId,
        nextCycle: nextCycle(attempt.ciclo, recurrence),
      })),
    );
    const byAttempt = new Map(recorded.map((row) => [row.attempt_id, row]));
    await emitCheckoutEvents(
      deps,
      tx,
      held.flatMap(({ attempt }) => {
        const row = byAttempt.get(attempt.id);
        if (row === undefined) return [];
        return [
          { attempt, type: 'cobranca_aprovada' as const },
          { attempt, type: row.concluida ? ('recorrencia_concluida' as const) : null },
        ];
      }),
    );
    await enqueueBackbilling(deps, tx, held, byAttempt, today);
    crashPoint('in_phase3');
    return approvals.map(({ job, attempt }): ChargeResult => {
      if (!settled.has(job.id) && !mutantActive('no_fence'))
        return { status: 'claim_lost', attemptId: attempt.id };
      if (!byAttempt.has(attempt.id)) return { status: 'resolved_elsewhere', attemptId: attempt.id };
      return {
        status: 'approved',
        attemptId: attempt.id,
        key: attempt.chave_idempotencia,
        cycle: attempt.ciclo,
        amountCents: attempt.valor_centavos,
      };
    });
  });
}

/** Back-billing: the next missed cycle of a recurrence is charged right away, by a job committed with the approval. */
async function enqueueBackbilling(
  deps: ChargeDeps,
  tx: DatabaseTransactionConnection,
  held: Approval[],
  recorded: Map<number, { status: string; concluida: boolean }>,
  today: IsoDate,
): Promise<void> {
  if (!deps.config.billing.backbillMissedCycles) return;
  const next = held.flatMap(({ attempt, recurrence }) => {
    const row = recorded.get(attempt.id);
    const cycle = nextCycle(attempt.ciclo, recurrence);
    return row?.status === 'ativo' && cycle <= today
      ? [
          {
            recorrenciaId: attempt.recorrencia_id,
            dataNegocio: today,
            motivo: 'retroativa' as const,
            ciclo: cycle,
          },
        ]
      : [];
  });
  await enqueueChargeJobs(deps.boss, next, tx);
}

export type Decline = {
  job: ChargeJob;
  attempt: Attempt;
  outcome: Extract<ChargeOutcome, { kind: 'declined' }>;
  /** The business date the retry backoff counts from. */
  today: IsoDate;
};

/**
 * Records declines (one or a whole batch) in one transaction and decides what follows each: a retry on a
 * later business date, or hold. Under the recurrence locks it reads which attempts are still pending and
 * decides; then it completes each job fenced to its attempt (with the decision as the job's output), and only
 * for the jobs still held records the decline, moves the recurrence and emits the events. Returns one result
 * per decline, in order.
 */
export async function recordDeclineOutcomes(deps: ChargeDeps, declines: Decline[]): Promise<ChargeResult[]> {
  if (declines.length === 0) return [];
  const policy = {
    backoffDays: deps.config.billing.retryBackoffDays,
    maxDeclinesBeforeHold: deps.config.billing.maxDeclinesBeforeHold,
    brandLimits30d: deps.config.billing.brandRetryLimits30d,
  };
  return deps.pool.transaction(async (tx) => {
    const recurrenceIds = declines.map(({ attempt }) => attempt.recorrencia_id);
    const recurrences = await lockRecurrences(tx, recurrenceIds);
    const pending = await pendingAttemptIds(
      tx,
      declines.map(({ attempt }) => attempt.id),
    );
    const sentLast30Days = await countAttemptsSentLast30Days(tx, recurrenceIds);
    // null: the attempt was resolved elsewhere (or its recurrence is gone), so there is nothing to record.
    const decided = declines.map((decline) => {
      const recurrence = recurrences.get(decline.attempt.recorrencia_id);
      if (recurrence === undefined || !pending.has(decline.attempt.id)) return null;
      const decision = decideAfterDecline(policy, {
        consecutiveDeclines: recurrence.falhas_consecutivas + 1,
        irreversible: isIrreversibleDecline(decline.outcome),
        code: decline.outcome.code,
        brand: recurrence.bandeira,
        attemptsLast30Days: sentLast30Days.get(recurrence.id) ?? 0,
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
      return { decline, recurrence, decision, result };
    });
    crashPoint('in_phase3');
    // The fence: a job whose claim lapsed gets nothing written here (its new holder records the same decline
    // through the same key). One statement per distinct output, since the declines of a batch mostly share a
    // code and a decision; the attempt itself is found through the job id.
    const groups = new Map<string, { output: object; jobs: Array<{ id: string; retryCount: number }> }>();
    for (const entry of decided) {
      if (entry === null) continue;
      const { kind, ...details } = entry.decision;
      const output = { status: 'declined', code: entry.result.code, decision: kind, ...details };
      const key = JSON.stringify(output);
      const group = groups.get(key) ?? { output, jobs: [] };
      group.jobs.push({ id: entry.decline.job.id, retryCount: entry.decline.job.retryCount });
      groups.set(key, group);
    }
    const settled = new Set<string>();
    for (const { output, jobs } of groups.values()) {
      const response = await deps.boss.complete(CHARGE_QUEUE, jobs, output, { db: bossDb(tx) });
      for (const id of settledIds(response)) settled.add(id);
    }
    const recording = decided.filter(
      (entry): entry is NonNullable<typeof entry> =>
        entry !== null && (settled.has(entry.decline.job.id) || mutantActive('no_fence')),
    );
    await declineAttempts(
      tx,
      recording.map(({ decline }) => ({
        id: decline.attempt.id,
        gatewayRef: decline.outcome.chargeId,
        code: decline.outcome.code,
        reversible: decline.outcome.reversible,
        message: decline.outcome.message,
      })),
    );
    // A recurrence paused or cancelled while its charge was in flight keeps that state: no retry is planned.
    const retries: Array<{ id: number; retryOn: IsoDate }> = [];
    const holds: Array<{ id: number; reason: string }> = [];
    for (const { recurrence, decision } of recording) {
      if (recurrence.status !== 'ativo') continue;
      if (decision.kind === 'retry') retries.push({ id: recurrence.id, retryOn: decision.retryOn });
      else holds.push({ id: recurrence.id, reason: decision.reason });
    }
    await markDeclinedForRetry(tx, retries);
    await markOnHold(tx, holds, true);
    const onHold = new Set(holds.map((hold) => hold.id));
    await emitCheckoutEvents(
      deps,
      tx,
      recording.flatMap(({ decline }) => [
        { attempt: decline.attempt, type: 'cobranca_recusada' as const },
        {
          attempt: decline.attempt,
          type: onHold.has(decline.attempt.recorrencia_id) ? ('recorrencia_em_hold' as const) : null,
        },
      ]),
    );
    const recorded = new Set(recording.map(({ decline }) => decline.job.id));
    return declines.map((decline, i): ChargeResult => {
      const entry = decided[i];
      if (entry === null || entry === undefined)
        return { status: 'resolved_elsewhere', attemptId: decline.attempt.id };
      if (!recorded.has(decline.job.id)) return { status: 'claim_lost', attemptId: decline.attempt.id };
      return entry.result;
    });
  });
}

/** The gateway refused the request itself (not a decline): the recurrence waits on hold for an operator. */
export async function recordRejection(deps: ChargeDeps, attempt: Attempt, reason: string): Promise<void> {
  await deps.pool.transaction(async (tx) => {
    if ((await lockRecurrence(tx, attempt.recorrencia_id))?.status === 'ativo') {
      await markOnHold(
        tx,
        [
          {
            id: attempt.recorrencia_id,
            reason: `gateway rejeitou a requisição da tentativa ${attempt.chave_idempotencia}: ${reason}`,
          },
        ],
        false,
      );
      await emitCheckoutEvents(deps, tx, [{ attempt, type: 'recorrencia_em_hold' }]);
    }
  });
}
