// Queries on eventos_checkout, the outbox of events for the checkout. Events are written in the transaction
// that records what they report (a charge outcome, a hold, a completion, a change through the API), with their
// content read from the rows as that transaction left them.
import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';

export const CHECKOUT_EVENT_TYPES = [
  'cobranca_aprovada',
  'cobranca_recusada',
  'recorrencia_em_hold',
  'recorrencia_concluida',
  /** A change made through the API (pausar, retomar, cancelar, reativar, PATCH); no attempt. */
  'recorrencia_alterada',
] as const;
export type CheckoutEventType = (typeof CHECKOUT_EVENT_TYPES)[number];

export type CheckoutEventRequest = {
  type: CheckoutEventType;
  recurrenceId: number;
  attemptId: number | null;
};

const InsertedEvent = z.object({ id: z.number() });

/**
 * Inserts the events (in the order given) in one statement; returns their ids in that order. Must run in the
 * transaction that changed what they report, after the change: their content is read from the rows as that
 * transaction left them. The body carries its own event id (`evento-<id>`, also sent as
 * X-Recorrencias-Evento-Id), so the row id is drawn before the insert.
 */
export async function insertCheckoutEvents(
  tx: CommonQueryMethods,
  events: readonly CheckoutEventRequest[],
  status: 'pendente' | 'registrado',
): Promise<readonly number[]> {
  if (events.length === 0) return [];
  const result = await tx.query(sql.type(InsertedEvent)`
    INSERT INTO eventos_checkout (id, tipo, recorrencia_id, cobranca_id, conteudo, status)
    SELECT e.id, e.tipo, r.id, c.id,
      jsonb_build_object(
        'evento_id', 'evento-' || e.id, 'evento', e.tipo, 'ocorrido_em', now(),
        'recorrencia', jsonb_build_object(
          'id', r.id, 'id_legado', r.id_legado, 'referencia_externa', r.referencia_externa,
          'vendedor_id', r.vendedor_id, 'cliente_ref', r.cliente_ref, 'status', r.status,
          'proxima_cobranca', r.proxima_cobranca, 'ciclos_cobrados', r.ciclos_cobrados,
          'total_ciclos', r.total_ciclos, 'motivo_hold', r.motivo_hold),
        'cobranca', CASE WHEN c.id IS NULL THEN NULL ELSE jsonb_build_object(
          'id', c.id, 'ciclo', c.ciclo, 'tentativa', c.tentativa, 'status', c.status,
          'valor_centavos', c.valor_centavos, 'moeda', c.moeda, 'gateway_ref', c.gateway_ref,
          'codigo_recusa', c.codigo_recusa, 'recusa_reversivel', c.recusa_reversivel, 'mensagem', c.mensagem) END),
      ${status}
    FROM (
      SELECT nextval(pg_get_serial_sequence('eventos_checkout', 'id')) AS id, tipo, recorrencia_id, cobranca_id, ordem
      FROM ${sql.unnest(
        events.map((event) => [event.type, event.recurrenceId, event.attemptId]),
        ['text', 'int8', 'int8'],
      )} WITH ORDINALITY AS t(tipo, recorrencia_id, cobranca_id, ordem)
    ) e
    JOIN checkout_recorrencias r ON r.id = e.recorrencia_id
    LEFT JOIN checkout_recorrencia_cobrancas c ON c.id = e.cobranca_id
    ORDER BY e.ordem
    RETURNING id`);
  return result.rows.map((row) => row.id);
}

const CheckoutEvent = z.object({
  id: z.number(),
  tipo: z.enum(CHECKOUT_EVENT_TYPES),
  cobranca_id: z.number().nullable(),
  status: z.string(),
  tentativas: z.number(),
  ultimo_erro: z.string().nullable(),
  criado_em: z.date(),
  enviado_em: z.date().nullable(),
});

/** The events about a recurrence, oldest first (the delivery state operators and the checkout look at). */
export async function listCheckoutEventsOf(
  db: CommonQueryMethods,
  recurrenceId: number,
): Promise<readonly z.infer<typeof CheckoutEvent>[]> {
  const result = await db.query(sql.type(CheckoutEvent)`
    SELECT id, tipo, cobranca_id, status, tentativas, ultimo_erro, criado_em, enviado_em
    FROM eventos_checkout WHERE recorrencia_id = ${recurrenceId} ORDER BY id`);
  return result.rows;
}
