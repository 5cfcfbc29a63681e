// Works the two signed-webhook outboxes: `enviar_aviso_vendedor` delivers seller notices
// (avisos_vendedores) and `enviar_evento_checkout` delivers events to the checkout (eventos_checkout). A
// failure is recorded on the row (attempts, last error) and rethrown so pg-boss retries with backoff; the
// last failure marks the row `falhou`, where operators see it.
import type { JobWithMetadata, PgBoss } from 'pg-boss';
import { z } from 'zod';
import type { Config } from '../../config.ts';
import {
  findOutboxEntry,
  markOutboxAttemptFailed,
  markOutboxSent,
  type OutboxEntry,
  type OutboxTable,
} from '../../db/outbox.ts';
import { postSignedEvent } from '../../notices/webhook.ts';
import { CHECKOUT_EVENT_QUEUE, NOTICE_DELIVERY_QUEUE } from '../../queue/task-names.ts';
import type { TaskDeps } from '../task.ts';

type Outbox = {
  queue: string;
  table: OutboxTable;
  /** The payload field carrying the row id. */
  idField: string;
  urlVariable: string;
  target: (config: Config) => {
    webhookUrl: string | undefined;
    secret: string | undefined;
    timeoutMs: number;
  };
  event: (entry: OutboxEntry) => { id: string; type: string };
};

const NOTICES: Outbox = {
  queue: NOTICE_DELIVERY_QUEUE,
  table: 'avisos_vendedores',
  idField: 'avisoId',
  urlVariable: 'NOTICE_WEBHOOK_URL',
  target: (config) => config.notices,
  event: (entry) => ({ id: `aviso-${entry.id}`, type: 'recorrencias_em_hold' }),
};

const CHECKOUT_EVENTS: Outbox = {
  queue: CHECKOUT_EVENT_QUEUE,
  table: 'eventos_checkout',
  idField: 'eventoId',
  urlVariable: 'CHECKOUT_WEBHOOK_URL',
  target: (config) => config.checkout,
  event: (entry) => ({ id: `evento-${entry.id}`, type: String(entry.conteudo.evento) }),
};

async function registerOutboxWorker(boss: PgBoss, deps: TaskDeps, outbox: Outbox): Promise<void> {
  const { webhookUrl, secret, timeoutMs } = outbox.target(deps.config);
  const payload = z.object({ [outbox.idField]: z.number().int().positive() }).strict();
  await boss.work(
    outbox.queue,
    {
      batchSize: 1,
      localConcurrency: 4,
      includeMetadata: true,
      pollingIntervalSeconds: deps.config.worker.pollIntervalSeconds,
    },
    async ([job]: JobWithMetadata<unknown>[]) => {
      if (job === undefined) return { skipped: 'empty batch' };
      const log = deps.log.child({ jobId: job.id, queue: outbox.queue });
      // Failures of the delivery itself are logged where they happen (and kept in `logged`); anything else (a
      // bad payload, the database) is logged here, so that no retry happens without a line saying why.
      let logged: unknown;
      try {
        const id = payload.parse(job.data)[outbox.idField] as number;
        const entryLog = log.child({ [outbox.idField]: id });
        const entry = await findOutboxEntry(deps.pool, outbox.table, id);
        if (entry === null || entry.status === 'enviado')
          return { skipped: entry === null ? 'not found' : 'already sent' };
        if (webhookUrl === undefined || secret === undefined) {
          const final = job.retryCount >= job.retryLimit;
          entryLog.warn({ final }, `${outbox.urlVariable} is not set on this worker: not delivered`);
          logged = new Error(`${outbox.urlVariable} is not set on this worker`);
          // On the row too, where operators look (the last attempt marks it falhou).
          await markOutboxAttemptFailed(deps.pool, outbox.table, id, (logged as Error).message, final);
          throw logged;
        }
        const event = outbox.event(entry);
        try {
          await postSignedEvent(
            { url: webhookUrl, secret, timeoutMs },
            { ...event, payload: entry.conteudo },
            job.signal,
          );
        } catch (error) {
          logged = error;
          const final = job.retryCount >= job.retryLimit;
          entryLog.warn(
            { err: error, attempt: job.retryCount + 1, final },
            final ? 'webhook delivery failed for good' : 'webhook delivery failed: will retry',
          );
          await markOutboxAttemptFailed(deps.pool, outbox.table, id, (error as Error).message, final);
          throw error;
        }
        await markOutboxSent(deps.pool, outbox.table, id).catch((error: unknown) => {
          entryLog.error(
            { err: error },
            'webhook delivered, but not recorded as sent: it will be sent again',
          );
          logged = error;
          throw error;
        });
        entryLog.info({ eventId: event.id, eventType: event.type }, 'webhook delivered');
        return { delivered: event.id };
      } catch (error) {
        if (error !== logged) log.error({ err: error }, 'webhook delivery job failed: will retry');
        throw error;
      }
    },
  );
}

/** Starts taking seller notice deliveries (called again after a pause). */
export async function registerNoticeWorker(boss: PgBoss, deps: TaskDeps): Promise<void> {
  await registerOutboxWorker(boss, deps, NOTICES);
}

/** Starts taking checkout event deliveries (called again after a pause). */
export async function registerCheckoutEventWorker(boss: PgBoss, deps: TaskDeps): Promise<void> {
  await registerOutboxWorker(boss, deps, CHECKOUT_EVENTS);
}
