// Emits events for the checkout from inside the transactions that record what they report (a charge's outcome,
// a change through the API): the event row and its delivery job commit with it, or not at all (a fenced phase 3 that rolls back leaves no
// event). Without CHECKOUT_WEBHOOK_URL the events are recorded (`registrado`), not sent.
import type { PgBoss } from 'pg-boss';
import type { CommonQueryMethods } from 'slonik';
import type { Config } from '../../config.ts';
import {
  insertCheckoutEvents,
  type CheckoutEventRequest,
  type CheckoutEventType,
} from '../../db/eventos-checkout.ts';
import { stableUuid } from '../../domain/identifiers.ts';
import { bossDb } from '../../queue/boss-executor.ts';
import { CHECKOUT_EVENT_QUEUE } from '../../queue/task-names.ts';

/**
 * Records the events (nulls skipped) and, with a webhook configured, enqueues their deliveries, in `tx`: one
 * statement for the events and one for the jobs, however many charges a batch settles. Run after the writes.
 */
export async function emitCheckoutEvents(
  deps: { config: Config; boss: PgBoss },
  tx: CommonQueryMethods,
  events: ReadonlyArray<{ attempt: { id: number; recorrencia_id: number }; type: CheckoutEventType | null }>,
): Promise<void> {
  await emit(
    deps,
    tx,
    events.flatMap(({ attempt, type }) =>
      type === null ? [] : [{ type, recurrenceId: attempt.recorrencia_id, attemptId: attempt.id }],
    ),
  );
}

/**
 * `recorrencia_alterada` for a change made through the API, in the change's transaction, after its writes:
 * every state the checkout may see has an event, so the one it applies last (by event id) is the latest.
 */
export async function emitRecurrenceChanged(
  deps: { config: Config; boss: PgBoss },
  tx: CommonQueryMethods,
  recurrenceId: number,
): Promise<void> {
  await emit(deps, tx, [{ type: 'recorrencia_alterada', recurrenceId, attemptId: null }]);
}

async function emit(
  deps: { config: Config; boss: PgBoss },
  tx: CommonQueryMethods,
  events: readonly CheckoutEventRequest[],
): Promise<void> {
  if (events.length === 0) return;
  const deliver = deps.config.checkout.webhookUrl !== undefined;
  const ids = await insertCheckoutEvents(tx, events, deliver ? 'pendente' : 'registrado');
  if (!deliver) return;
  await deps.boss.insert(
    CHECKOUT_EVENT_QUEUE,
    ids.map((id) => ({ id: stableUuid(`evento-checkout:${id}`), data: { eventoId: id } })),
    { db: bossDb(tx) },
  );
}
