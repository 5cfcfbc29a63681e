// Phase 3 of the charge protocol: record what the gateway answered, in short transactions that also complete
// the jobs, fenced to the attempt of each job this worker holds. A job whose claim lapsed (it expired, or lost
// its heartbeat, and another worker took it over) gets nothing written here: its new holder reaches the same
// outcome through the same key and records it.
import type { DatabaseTransactionConnection } from 'slonik';
import { recordApprovals } from '../../db/charge-batch.ts';
import { countAttemptsSentLast30Days, resolveAttempt, type Attempt } from '../../db/cobrancas.ts';
import { lockRecurrence, markDeclinedForRetry, markOnHold, type Recurrence } from '../../db/recorrencias.ts';
import { nextCycle } from '../../domain/calendar.ts';
import type { IsoDate } from '../../domain/dates.ts';
import { decideAfterDecline } from '../../domain/retry-policy.ts';
import { isIrreversibleDecline } from '../../gateway/decline-codes.ts';
import type { ChargeOutcome } from '../../gateway/gateway.ts';
import { affectedRows, bossDb } from '../../queue/boss-executor.ts';
import { CHARGE_QUEUE } from '../../queue/task-names.ts';
import { enqueueChargeJobs } from './charge-jobs.ts';
import type { ChargeDeps, ChargeJob, ChargeResult } from './charge-recurrence.ts';
import { emitCheckoutEvents } from './checkout-events.ts';
import { crashPoint, mutantActive } from './test-hooks.ts';

export class ClaimLostError extends Error {}

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

/** Completes one job inside `tx`, fenced to the attempt we hold; throws ClaimLostError (rollback) otherwise. */
async function completeJobIn(
  deps: ChargeDeps,
  tx: DatabaseTransactionConnection,
  job: ChargeJob,
  output: object,
): Promise<void> {
  crashPoint('in_phase3');
  const response = await deps.boss.complete(
    CHARGE_QUEUE,
    { id: job.id, retryCount: job.retryCount },
    output,
    { db: bossDb(tx) },
  );
  if (affectedRows(response) !== 1 && !mutantActive('no_fence')) throw new ClaimLostError();
}

/** Records a decline and decides what follows: a retry on a later business date, or hold. */
export async function recordDecline(
  deps: ChargeDeps,
  job: ChargeJob,
  attempt: Attempt,
  outcome: Extract<ChargeOutcome, { kind: 'declined' }>,
  today: IsoDate,
): Promise<ChargeResult> {
  return deps.pool.transaction(async (tx) => {
    const recurrence = await lockRecurrence(tx, attempt.recorrencia_id);
    const resolved = await resolveAttempt(tx, attempt.id, {
      status: 'recusada',
      gatewayRef: outcome.chargeId,
      code: outcome.code,
      reversible: outcome.reversible,
      message: outcome.message,
    });
    if (recurrence === null || !resolved)
      return { status: 'resolved_elsewhere', attemptId: attempt.id } as const;
    const decision = decideAfterDecline(
      {
        backoffDays: deps.config.billing.retryBackoffDays,
        maxDeclinesBeforeHold: deps.config.billing.maxDeclinesBeforeHold,
        brandLimits30d: deps.config.billing.brandRetryLimits30d,
      },
      {
        consecutiveDeclines: recurrence.falhas_consecutivas + 1,
        irreversible: isIrreversibleDecline(outcome),
        code: outcome.code,
        brand: recurrence.bandeira,
        attemptsLast30Days: await countAttemptsSentLast30Days(tx, recurrence.id),
        today,
      },
    );
    // A recurrence paused or cancelled while its charge was in flight keeps that state: no retry is planned.
    const held = recurrence.status === 'ativo' && decision.kind !== 'retry';
    if (recurrence.status === 'ativo') {
      if (decision.kind === 'retry') await markDeclinedForRetry(tx, recurrence.id, decision.retryOn);
      else await markOnHold(tx, recurrence.id, decision.reason, true);
    }
    await emitCheckoutEvents(deps, tx, [
      { attempt, type: 'cobranca_recusada' },
      { attempt, type: held ? 'recorrencia_em_hold' : null },
    ]);
    const result: ChargeResult = {
      status: 'declined',
      attemptId: attempt.id,
      key: attempt.chave_idempotencia,
      cycle: attempt.ciclo,
      code: outcome.code,
      decision: decision.kind,
    };
    await completeJobIn(deps, tx, job, { ...result, ...decision });
    return result;
  });
}

/** The gateway refused the request itself (not a decline): the recurrence waits on hold for an operator. */
export async function recordRejection(deps: ChargeDeps, attempt: Attempt, reason: string): Promise<void> {
  await deps.pool.transaction(async (tx) => {
    if ((await lockRecurrence(tx, attempt.recorrencia_id))?.status === 'ativo') {
      await markOnHold(
        tx,
        attempt.recorrencia_id,
        `gateway rejeitou a requisição da tentativa ${attempt.chave_idempotencia}: ${reason}`,
        false,
      );
      await emitCheckoutEvents(deps, tx, [{ attempt, type: 'recorrencia_em_hold' }]);
    }
  });
}
