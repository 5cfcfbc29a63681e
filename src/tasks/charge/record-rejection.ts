// A request the gateway refused (not a decline: the issuer never saw it) puts the recurrence on hold for an
// operator, in a transaction of its own beside phase 3 (record-outcomes.ts), fenced to the job's claim the
// same way.
import { findPendingAttempt, markAttemptBlocked, resolveAttempt, type Attempt } from '../../db/cobrancas.ts';
import { lockHeldClaim } from '../../db/jobs.ts';
import { lockRecurrence, markOnHold } from '../../db/recorrencias.ts';
import { KEY_EXPIRED, type ChargeOutcome } from '../../gateway/gateway.ts';
import { CHARGE_QUEUE } from '../../queue/task-names.ts';
import type { ChargeDeps, ChargeJob } from './charge-recurrence.ts';
import { emitCheckoutEvents } from './checkout-events.ts';
import { claimOf } from './record-outcomes.ts';

/** What recording a rejection did: `held` or `not_active` (the recurrence was not active) end the job. */
export type RejectionRecord = 'held' | 'not_active' | 'resolved_elsewhere' | 'claim_lost';

/**
 * The gateway refused the request itself (not a decline): the recurrence waits on hold for an operator.
 * A request refused before anything ran under its key (400, 422) also ends its attempt, as `rejeitada` (not a
 * decline: the issuer never saw the card): resumed, it would send the same card and amount and be refused
 * again, for ever; the attempt an operator's `reativar` leads to is created with the recurrence's values,
 * fixed by then. One whose key holds another request (409) stays pending, blocked: never sent or looked up
 * again until an operator says what became of it (the block is written whoever holds the job). The rest is
 * fenced, as phase 3 is, to the job's claim: a worker whose claim lapsed writes nothing more (the job's new
 * holder records the outcome), and nothing is written for an attempt another sender resolved meanwhile.
 */
export async function recordRejection(
  deps: ChargeDeps,
  job: ChargeJob,
  attempt: Attempt,
  rejection: Extract<ChargeOutcome, { kind: 'rejected' }>,
): Promise<RejectionRecord> {
  return deps.pool.transaction(async (tx) => {
    const recurrence = await lockRecurrence(tx, attempt.recorrencia_id);
    const refusal = { code: rejection.reason, message: rejection.message ?? '' };
    // A fact about the key, not the job's outcome: written whoever holds the job, so that its next holder
    // does not look the key up.
    if (rejection.executed) await markAttemptBlocked(tx, attempt.id, refusal);
    if (!(await lockHeldClaim(tx, CHARGE_QUEUE, claimOf(job)))) return 'claim_lost';
    const pending = await findPendingAttempt(tx, attempt.recorrencia_id);
    if (pending?.id !== attempt.id) return 'resolved_elsewhere';
    if (!rejection.executed) await resolveAttempt(tx, attempt.id, { status: 'rejeitada', ...refusal });
    if (recurrence?.status !== 'ativo') return 'not_active';
    await markOnHold(
      tx,
      [
        {
          id: attempt.recorrencia_id,
          reason:
            rejection.reason === KEY_EXPIRED
              ? `tentativa ${attempt.chave_idempotencia} não reenviada: a gateway pode ter esquecido a chave (${KEY_EXPIRED})`
              : `gateway rejeitou a requisição da tentativa ${attempt.chave_idempotencia}: ${rejection.reason}`,
        },
      ],
      false,
    );
    await emitCheckoutEvents(deps, tx, [{ attempt, type: 'recorrencia_em_hold' }]);
    return 'held';
  });
}
