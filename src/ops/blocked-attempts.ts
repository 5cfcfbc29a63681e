// An operator's answer for an attempt the workers cannot resolve: one whose idempotency key the gateway holds
// for another request (409 idempotency_key_reused), or one sent before and older than the gateway keeps its keys
// (idempotency_key_expired: a forgotten key would be charged as new). Keys are made of the recurrence, the cycle
// and the attempt number, so a 409's request may be this very cycle charged before (under a restored database,
// with another card) or another environment's. The workers never look such a key up (the lookup would answer
// about that other request, or not know the key) nor send it again; the operator, who asked the gateway, says
// which it was:
//  - `cobrada`: the cycle was paid under that key: the attempt is approved with the gateway's reference and the
//    amount and currency the gateway charged (they differ from the attempt's when the 409 was about them), and
//    the recurrence moves to its next cycle, as an approval does (a `cobranca_aprovada` event for the checkout);
//  - `nao_cobrada`: nothing of this customer ran under it: the attempt ends `rejeitada`, and the cycle is
//    charged with a new attempt (a new key) once the recurrence is taken off hold.
// A repeated call (a retry after a lost answer) gets the first call's answer with `mudou: false`; one that says
// otherwise than the first is refused with 409 and the first resolution.
import { recordApprovals } from '../db/charge-batch.ts';
import { findPendingAttempt, isBlocked, resolveAttempt, unblockAsCharged } from '../db/cobrancas.ts';
import { findLatestAudit, insertAudit } from '../db/pauses.ts';
import { insertChangeHistory } from '../db/recorrencias-gestao.ts';
import { lockRecurrence } from '../db/recorrencias.ts';
import { nextCycle } from '../domain/calendar.ts';
import { AppError } from '../errors.ts';
import { KEY_REUSED } from '../gateway/gateway.ts';
import { emitCheckoutEvents } from '../tasks/charge/checkout-events.ts';
import { skipCyclesOfPause } from '../tasks/charge/record-outcomes.ts';
import type { Actor } from './actor.ts';
import type { OpsDeps } from './deps.ts';

const AUDIT_ACTION = 'resolve_blocked_attempt';

export type BlockedAttemptResolution =
  | { resultado: 'cobrada'; gateway_ref: string; valor_centavos: number; moeda: string; motivo: string }
  | { resultado: 'nao_cobrada'; motivo: string };

/** What the audit keeps of a resolution, and the answer it gave. */
type Recorded = BlockedAttemptResolution & {
  cobranca_id: number;
  ciclo: string;
  proxima_cobranca?: string | null;
};

/** Whether `again` says what `first` said (the operator's `motivo` aside). */
function sameResolution(first: BlockedAttemptResolution, again: BlockedAttemptResolution): boolean {
  if (first.resultado === 'nao_cobrada' || again.resultado === 'nao_cobrada') {
    return first.resultado === again.resultado;
  }
  return (
    first.gateway_ref === again.gateway_ref &&
    first.valor_centavos === again.valor_centavos &&
    first.moeda === again.moeda
  );
}

/**
 * Resolves the blocked attempt `attemptId` of recurrence `id` as the operator found it at the gateway. 404 for
 * an unknown recurrence, 409 when that attempt is not the recurrence's blocked one (resolved otherwise before,
 * or one the workers still resolve on their own through the gateway).
 */
export async function resolveBlockedAttempt(
  deps: OpsDeps,
  who: Actor,
  id: number,
  attemptId: number,
  resolution: BlockedAttemptResolution,
) {
  const result = await deps.pool.transaction(async (tx) => {
    const recurrence = await lockRecurrence(tx, id);
    if (recurrence === null) throw new AppError('NOT_FOUND', `no recurrence ${id}`);
    const pending = await findPendingAttempt(tx, id);
    if (pending?.id !== attemptId || !isBlocked(pending)) {
      const first = await findLatestAudit(tx, {
        action: AUDIT_ACTION,
        target: `recorrencia:${id}`,
        details: { cobranca_id: attemptId },
      });
      if (first !== null) {
        const recorded = first.detalhes as Recorded;
        if (!sameResolution(recorded, resolution)) {
          throw new AppError(
            'CONFLICT',
            `attempt ${attemptId} of recurrence ${id} was already resolved as ${recorded.resultado} by ${first.quem}`,
            { details: { resolucao: recorded, por: first.quem, em: first.em.toISOString() } },
          );
        }
        return { kind: 'replay' as const, recorded };
      }
      throw new AppError(
        'CONFLICT',
        `attempt ${attemptId} is not the blocked attempt of recurrence ${id}: only an attempt blocked on its key (idempotency_key_reused, idempotency_key_expired) waits for an operator`,
        {
          details: {
            cobranca_pendente: pending?.id ?? null,
            bloqueada: pending !== null && isBlocked(pending),
          },
        },
      );
    }
    let movedTo: string | null = null;
    if (resolution.resultado === 'cobrada') {
      await unblockAsCharged(tx, attemptId, {
        amountCents: resolution.valor_centavos,
        currency: resolution.moeda,
      });
      const approvals = await recordApprovals(tx, [
        {
          attemptId,
          recurrenceId: id,
          gatewayRef: resolution.gateway_ref,
          nextCycle: nextCycle(pending.ciclo, recurrence),
        },
      ]);
      // As a worker's approval does: a cycle after a resume's date skips the cycles of the pause.
      const [approved] = await skipCyclesOfPause(tx, approvals, new Map([[attemptId, recurrence]]));
      if (approved === undefined) throw new Error(`attempt ${attemptId} was not approved`);
      movedTo = approved.proxima_cobranca;
      await insertChangeHistory(tx, id, who.name, [
        { campo: 'proxima_cobranca', valor_anterior: recurrence.proxima_cobranca, valor_novo: movedTo },
        ...(approved.concluida
          ? [{ campo: 'status', valor_anterior: recurrence.status, valor_novo: approved.status }]
          : []),
      ]);
      await emitCheckoutEvents(deps, tx, [
        { attempt: pending, type: 'cobranca_aprovada' },
        { attempt: pending, type: approved.concluida ? 'recorrencia_concluida' : null },
      ]);
    } else {
      await resolveAttempt(tx, attemptId, {
        status: 'rejeitada',
        code: pending.codigo_recusa ?? KEY_REUSED,
        message: `resolvida por ${who.name}: ${resolution.motivo}`,
      });
    }
    await insertAudit(tx, {
      who,
      action: AUDIT_ACTION,
      target: `recorrencia:${id}`,
      details: {
        cobranca_id: attemptId,
        chave_idempotencia: pending.chave_idempotencia,
        ciclo: pending.ciclo,
        proxima_cobranca: movedTo,
        ...resolution,
      },
    });
    return { kind: 'resolved' as const, attempt: pending, movedTo };
  });
  if (result.kind === 'replay') {
    const replay = result.recorded;
    return {
      recorrencia_id: id,
      cobranca_id: attemptId,
      ciclo: replay.ciclo,
      status: replay.resultado === 'cobrada' ? 'aprovada' : 'rejeitada',
      proxima_cobranca: replay.proxima_cobranca ?? null,
      mudou: false,
    };
  }
  deps.log.warn(
    {
      recorrenciaId: id,
      attemptId,
      key: result.attempt.chave_idempotencia,
      by: who,
      resultado: resolution.resultado,
    },
    'blocked attempt resolved by an operator',
  );
  return {
    recorrencia_id: id,
    cobranca_id: attemptId,
    ciclo: result.attempt.ciclo,
    status: resolution.resultado === 'cobrada' ? 'aprovada' : 'rejeitada',
    proxima_cobranca: result.movedTo,
    mudou: true,
  };
}
