// One charge, in three atomic phases (Stripe's idempotency-key protocol):
//  1. short transaction: lock the recurrence, check it is still due and active, create (or reuse) the
//     pending attempt with its idempotency key;
//  2. no transaction: call the gateway with that key (a resumed attempt first looks the key up);
//  3. short transaction: record the outcome, update the recurrence and complete the job fenced to this
//     attempt of it, committing only if the completion matched.
// A crash anywhere leaves nothing, or a pending attempt whose key is reused later: never a second charge.
import type { Job } from 'pg-boss';
import type { DatabasePool, DatabaseTransactionConnection } from 'slonik';
import type { Config } from '../../config.ts';
import {
  countAttemptsSentLast30Days,
  findPendingAttempt,
  insertAttempt,
  insertSkippedCycles,
  lastAttemptNumber,
  markAttemptSending,
  resolveAttempt,
  type Attempt,
} from '../../db/cobrancas.ts';
import {
  lockRecurrence,
  markChargingCycle,
  markCycleApproved,
  markDeclinedForRetry,
  markOnHold,
  type Recurrence,
} from '../../db/recorrencias.ts';
import { nextCycle, planCharge } from '../../domain/calendar.ts';
import { businessDate, type IsoDate } from '../../domain/dates.ts';
import { attemptKey } from '../../domain/identifiers.ts';
import { decideAfterDecline, type DeclineDecision } from '../../domain/retry-policy.ts';
import { isIrreversibleDecline } from '../../gateway/decline-codes.ts';
import type { ChargeOutcome, PaymentGateway } from '../../gateway/gateway.ts';
import type { Logger } from '../../log.ts';
import { affectedRows, bossDb } from '../../queue/boss-executor.ts';
import { CHARGE_QUEUE } from '../../queue/task-names.ts';
import type { PgBoss } from 'pg-boss';
import { withGatewaySlot } from './gateway-slot.ts';
import { enqueueChargeJobs, type ChargeJobPayload } from './charge-jobs.ts';
import { crashPoint, mutantActive } from './test-hooks.ts';

export type ChargeDeps = {
  config: Config;
  pool: DatabasePool;
  boss: PgBoss;
  log: Logger;
  gateway: PaymentGateway;
  now: () => Date;
};

export type ChargeJob = Pick<Job<ChargeJobPayload>, 'id' | 'retryCount' | 'signal' | 'data'>;

export type ChargeResult =
  | { status: 'approved'; attemptId: number; key: string; cycle: IsoDate; amountCents: number }
  | {
      status: 'declined';
      attemptId: number;
      key: string;
      cycle: IsoDate;
      code: string;
      decision: DeclineDecision['kind'];
    }
  | { status: 'skipped'; reason: string }
  | { status: 'resolved_elsewhere'; attemptId: number }
  /** The gateway outcome is unknown: the attempt stays pending and the job must be retried (same key). */
  | { status: 'unresolved'; attemptId: number; key: string; reason: string }
  /** The gateway refused the request itself (not a decline): the recurrence is on hold for an operator. */
  | { status: 'rejected'; attemptId: number; key: string; reason: string }
  /** Our claim on the job lapsed before phase 3 committed: nothing was written; the job's new holder finishes. */
  | { status: 'claim_lost'; attemptId: number };

class ClaimLostError extends Error {}

type Prepared =
  | { kind: 'skip'; reason: string }
  | { kind: 'charge'; attempt: Attempt; recurrence: Recurrence; resumed: boolean };

/** Phase 1. Runs in one short transaction holding the recurrence's row lock. */
async function prepareAttempt(
  deps: ChargeDeps,
  tx: DatabaseTransactionConnection,
  job: ChargeJob,
): Promise<Prepared> {
  const { recorrenciaId, dataNegocio, motivo } = job.data;
  const recurrence = await lockRecurrence(tx, recorrenciaId);
  if (recurrence === null) return { kind: 'skip', reason: 'recurrence_not_found' };
  if (recurrence.status !== 'ativo') return { kind: 'skip', reason: `recurrence_${recurrence.status}` };

  // An unresolved attempt is resumed with its own key, never replaced: the gateway may have executed it.
  let pending = await findPendingAttempt(tx, recorrenciaId);
  if (pending !== null && mutantActive('fresh_key')) {
    // Deliberately wrong (test-only): give up on the unresolved attempt and charge under a new key.
    await resolveAttempt(tx, pending.id, {
      status: 'recusada',
      gatewayRef: null,
      code: 'MUTANT',
      reversible: true,
      message: 'abandoned',
    });
    await markChargingCycle(tx, recorrenciaId, pending.ciclo);
    pending = null;
  }
  if (pending !== null) {
    await markAttemptSending(tx, pending.id, job.id);
    return { kind: 'charge', attempt: pending, recurrence, resumed: true };
  }

  if (recurrence.proxima_cobranca > dataNegocio) return { kind: 'skip', reason: 'not_due' };
  if (motivo === 'retentativa') {
    if (recurrence.proxima_tentativa === null || recurrence.proxima_tentativa > dataNegocio) {
      return { kind: 'skip', reason: 'retry_not_due' };
    }
  } else if (recurrence.proxima_tentativa !== null) {
    return { kind: 'skip', reason: 'waiting_for_retry' };
  }
  if (motivo === 'retroativa' && job.data.ciclo !== recurrence.proxima_cobranca) {
    return { kind: 'skip', reason: 'backbill_cycle_already_handled' };
  }

  const plan = planCharge(
    recurrence.proxima_cobranca,
    dataNegocio,
    recurrence,
    deps.config.billing.backbillMissedCycles,
  );
  await insertSkippedCycles(
    tx,
    recorrenciaId,
    plan.skipped,
    plan.cycle,
    'ciclos atrasados: cobrado apenas o ciclo atual',
  );
  if (plan.cycle !== recurrence.proxima_cobranca || recurrence.proxima_tentativa !== null) {
    await markChargingCycle(tx, recorrenciaId, plan.cycle);
  }
  const number = (await lastAttemptNumber(tx, recorrenciaId, plan.cycle)) + 1;
  const attempt = await insertAttempt(tx, {
    recurrenceId: recorrenciaId,
    cycle: plan.cycle,
    attempt: number,
    key: attemptKey(recorrenciaId, plan.cycle, number),
    amountCents: recurrence.valor_centavos,
    currency: recurrence.moeda,
    cardToken: recurrence.cartao_token,
    businessDate: dataNegocio,
    jobId: job.id,
  });
  return { kind: 'charge', attempt, recurrence, resumed: false };
}

/** Phase 2. No transaction is open while the gateway is called. */
async function callGateway(
  deps: ChargeDeps,
  attempt: Attempt,
  resumed: boolean,
  signal: AbortSignal,
): Promise<ChargeOutcome> {
  if (resumed) {
    // The previous sender may have reached the gateway: ask before sending again (with the same key).
    const known = await deps.gateway.lookup(attempt.chave_idempotencia, signal);
    if (known.kind !== 'not_found') return known;
  }
  return deps.gateway.charge(
    {
      idempotencyKey: attempt.chave_idempotencia,
      amountCents: attempt.valor_centavos,
      currency: attempt.moeda,
      cardToken: attempt.cartao_token,
      description: `recorrencia ${attempt.recorrencia_id} ciclo ${attempt.ciclo}`,
      metadata: { recorrenciaId: attempt.recorrencia_id, ciclo: attempt.ciclo, tentativa: attempt.tentativa },
    },
    signal,
  );
}

/** Completes the job inside `tx`, fenced to the attempt we hold; throws ClaimLostError (rollback) otherwise. */
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

async function recordApproval(
  deps: ChargeDeps,
  job: ChargeJob,
  attempt: Attempt,
  chargeId: string,
  today: IsoDate,
): Promise<ChargeResult> {
  return deps.pool.transaction(async (tx) => {
    const recurrence = await lockRecurrence(tx, attempt.recorrencia_id);
    if (
      recurrence === null ||
      !(await resolveAttempt(tx, attempt.id, { status: 'aprovada', gatewayRef: chargeId }))
    ) {
      return { status: 'resolved_elsewhere', attemptId: attempt.id } as const;
    }
    const next = nextCycle(attempt.ciclo, recurrence);
    const completed =
      recurrence.total_ciclos !== null && recurrence.ciclos_cobrados + 1 >= recurrence.total_ciclos;
    await markCycleApproved(tx, recurrence.id, { nextCycle: next, completed });
    // Back-billing: the next missed cycle is charged right away, by a job committed with this approval.
    if (
      deps.config.billing.backbillMissedCycles &&
      !completed &&
      recurrence.status === 'ativo' &&
      next <= today
    ) {
      await enqueueChargeJobs(
        deps.boss,
        [{ recorrenciaId: recurrence.id, dataNegocio: today, motivo: 'retroativa', ciclo: next }],
        tx,
      );
    }
    const result: ChargeResult = {
      status: 'approved',
      attemptId: attempt.id,
      key: attempt.chave_idempotencia,
      cycle: attempt.ciclo,
      amountCents: attempt.valor_centavos,
    };
    await completeJobIn(deps, tx, job, result);
    return result;
  });
}

async function recordDecline(
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
    if (recurrence.status === 'ativo') {
      if (decision.kind === 'retry') await markDeclinedForRetry(tx, recurrence.id, decision.retryOn);
      else await markOnHold(tx, recurrence.id, decision.reason, true);
    }
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

/** Runs the whole protocol for one job. Throws only on infrastructure errors (the job is then retried). */
export async function chargeRecurrence(deps: ChargeDeps, job: ChargeJob): Promise<ChargeResult> {
  const log = deps.log.child({
    jobId: job.id,
    recorrenciaId: job.data.recorrenciaId,
    dataNegocio: job.data.dataNegocio,
  });
  crashPoint('before_phase1');
  const prepared = await deps.pool.transaction((tx) => prepareAttempt(deps, tx, job));
  if (prepared.kind === 'skip') {
    log.debug({ reason: prepared.reason }, 'nothing to charge');
    return { status: 'skipped', reason: prepared.reason };
  }
  const { attempt, resumed } = prepared;
  const attemptLog = log.child({
    attemptId: attempt.id,
    key: attempt.chave_idempotencia,
    ciclo: attempt.ciclo,
  });
  crashPoint('after_phase1');

  const outcome = await withGatewaySlot(deps, job, () => callGateway(deps, attempt, resumed, job.signal));
  crashPoint('after_gateway');

  const today = maxDate(businessDate(deps.now(), deps.config.timeZone), job.data.dataNegocio);
  try {
    switch (outcome.kind) {
      case 'approved': {
        const result = await recordApproval(deps, job, attempt, outcome.chargeId, today);
        crashPoint('after_commit');
        attemptLog.debug({ result }, 'charge approved');
        return result;
      }
      case 'declined': {
        const result = await recordDecline(deps, job, attempt, outcome, today);
        crashPoint('after_commit');
        attemptLog.info({ code: outcome.code, reversible: outcome.reversible, result }, 'charge declined');
        return result;
      }
      case 'unknown':
        attemptLog.warn(
          { reason: outcome.reason, resumed },
          'charge outcome unknown: attempt stays pending, job will retry with the same key',
        );
        return {
          status: 'unresolved',
          attemptId: attempt.id,
          key: attempt.chave_idempotencia,
          reason: outcome.reason,
        };
      case 'rejected': {
        const reason = `gateway rejeitou a requisição da tentativa ${attempt.chave_idempotencia}: ${outcome.reason}`;
        await deps.pool.transaction(async (tx) => {
          if ((await lockRecurrence(tx, attempt.recorrencia_id))?.status === 'ativo') {
            await markOnHold(tx, attempt.recorrencia_id, reason, false);
          }
        });
        attemptLog.error(
          { reason: outcome.reason },
          'gateway rejected the charge request: recurrence put on hold for an operator',
        );
        return {
          status: 'rejected',
          attemptId: attempt.id,
          key: attempt.chave_idempotencia,
          reason: outcome.reason,
        };
      }
    }
  } catch (error) {
    if (error instanceof ClaimLostError) {
      // Another worker holds this job now (ours expired or lost its heartbeat); it will reach the same
      // outcome through the same key and record it. Our transaction rolled back: nothing was written.
      attemptLog.warn(
        { outcome: outcome.kind },
        'job claim lost before commit: outcome not recorded here (fence refused)',
      );
      return { status: 'claim_lost', attemptId: attempt.id };
    }
    throw error;
  }
}

function maxDate(a: IsoDate, b: IsoDate): IsoDate {
  return a > b ? a : b;
}
