// Recurrence views for operators: one recurrence with its attempts, skipped cycles, change history and
// checkout events. Card token references are shown masked: they are not card data, but nothing outside the
// gateway path needs them whole.
import { isBlocked, listAttemptsOf, listSkippedCyclesOf } from '../db/cobrancas.ts';
import { listCheckoutEventsOf } from '../db/eventos-checkout.ts';
import { listChangeHistory } from '../db/recorrencias-gestao.ts';
import { findRecurrence } from '../db/recorrencias.ts';
import { AppError } from '../errors.ts';
import type { OpsDeps } from './deps.ts';

/**
 * At most 8 characters of a token shown, and never more than half of it: its first 4 (often a type prefix such
 * as `tok_`) only from 16 characters on, its last 4 from 12, nothing below that.
 */
export function maskToken(token: string): string {
  if (token.length < 12) return '****';
  return token.length < 16 ? `…${token.slice(-4)}` : `${token.slice(0, 4)}…${token.slice(-4)}`;
}

export async function recurrenceDetail(deps: OpsDeps, id: number) {
  const recurrence = await findRecurrence(deps.pool, id);
  if (recurrence === null) throw new AppError('NOT_FOUND', `no recurrence ${id}`);
  const [attempts, skipped, history, events] = await Promise.all([
    listAttemptsOf(deps.pool, id),
    listSkippedCyclesOf(deps.pool, id),
    listChangeHistory(deps.pool, id),
    listCheckoutEventsOf(deps.pool, id),
  ]);
  return {
    recorrencia: { ...recurrence, cartao_token: maskToken(recurrence.cartao_token) },
    cobrancas: attempts.map((attempt) => ({
      ...attempt,
      cartao_token: maskToken(attempt.cartao_token),
      // Waiting for an operator: POST /recorrencias/:id/cobrancas/:cobranca/resolver.
      bloqueada: isBlocked(attempt),
    })),
    ciclos_pulados: skipped,
    alteracoes: history,
    eventos_checkout: events,
  };
}
