// The permanent names of the periodic tasks and queues. Operators, schedules and stored jobs refer to these
// strings: never derive them from code identifiers, never rename them.
export const PERIODIC_TASKS = [
  'processar_recorrencias_do_dia',
  'retentar_cobrancas_falhadas',
  'notificar_recorrencias_hold',
  'limpar_recorrencias_antigas',
] as const;

export type PeriodicTaskName = (typeof PERIODIC_TASKS)[number];

/** The charges: one job per recurrence, business date and reason (and cycle, for back-billing). */
export const CHARGE_QUEUE = 'cobrar_recorrencia';
/**
 * Charge jobs waiting for an operator: retries ran out (their pending attempt is resumed by a later run or a
 * redrive), the gateway refused the request or the key, an approval came back for an attempt that can no
 * longer record it (approved_but_blocked, approved_but_ended), or the payload was invalid.
 */
export const CHARGE_DEAD_LETTER_QUEUE = 'cobrar_recorrencia_dlq';

export function isPeriodicTask(name: string): name is PeriodicTaskName {
  return (PERIODIC_TASKS as readonly string[]).includes(name);
}

/** Delivers one seller notice from the avisos_vendedores outbox to the configured webhook, with retries. */
export const NOTICE_DELIVERY_QUEUE = 'enviar_aviso_vendedor';

/** Delivers one checkout event from the eventos_checkout outbox to CHECKOUT_WEBHOOK_URL, with retries. */
export const CHECKOUT_EVENT_QUEUE = 'enviar_evento_checkout';

/** Every queue of this service: queries on pgboss.job name them, so they use its (name, ...) indexes. */
export const ALL_QUEUES = [
  ...PERIODIC_TASKS,
  CHARGE_QUEUE,
  CHARGE_DEAD_LETTER_QUEUE,
  NOTICE_DELIVERY_QUEUE,
  CHECKOUT_EVENT_QUEUE,
] as const;
