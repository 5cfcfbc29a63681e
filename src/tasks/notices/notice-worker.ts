// Works `enviar_aviso_vendedor`: delivers one outbox notice to the seller webhook. A failure is recorded on
// the notice (attempts, last error) and rethrown so pg-boss retries with backoff; the last failure marks the
// notice `falhou`, where operators see it.
import type { JobWithMetadata, PgBoss } from 'pg-boss';
import { z } from 'zod';
import { findNotice, markNoticeAttemptFailed, markNoticeSent } from '../../db/avisos.ts';
import { postSignedEvent } from '../../notices/webhook.ts';
import { NOTICE_DELIVERY_QUEUE } from '../../queue/task-names.ts';
import type { TaskDeps } from '../task.ts';

const payload = z.object({ avisoId: z.number().int().positive() }).strict();

/** Starts taking notice deliveries (called again after a pause). */
export async function registerNoticeWorker(boss: PgBoss, deps: TaskDeps): Promise<void> {
  const { webhookUrl, secret, timeoutMs } = deps.config.notices;
  await boss.work(
    NOTICE_DELIVERY_QUEUE,
    {
      batchSize: 1,
      localConcurrency: 4,
      includeMetadata: true,
      pollingIntervalSeconds: deps.config.worker.pollIntervalSeconds,
    },
    async ([job]: JobWithMetadata<unknown>[]) => {
      if (job === undefined) return { skipped: 'empty batch' };
      const { avisoId } = payload.parse(job.data);
      const log = deps.log.child({ jobId: job.id, avisoId });
      const notice = await findNotice(deps.pool, avisoId);
      if (notice === null || notice.status === 'enviado')
        return { skipped: notice === null ? 'not found' : 'already sent' };
      if (webhookUrl === undefined || secret === undefined) {
        log.warn('NOTICE_WEBHOOK_URL is not set: notice left pending');
        throw new Error('NOTICE_WEBHOOK_URL is not set');
      }
      try {
        await postSignedEvent(
          { url: webhookUrl, secret, timeoutMs },
          { id: `aviso-${notice.id}`, type: 'recorrencias_em_hold', payload: notice.conteudo },
          job.signal,
        );
      } catch (error) {
        const final = job.retryCount >= job.retryLimit;
        await markNoticeAttemptFailed(deps.pool, notice.id, (error as Error).message, final);
        log.warn(
          { err: error, attempt: job.retryCount + 1, final },
          final ? 'notice delivery failed for good' : 'notice delivery failed: will retry',
        );
        throw error;
      }
      await markNoticeSent(deps.pool, notice.id);
      log.info({ vendedorId: notice.vendedor_id }, 'notice delivered');
      return { delivered: notice.id };
    },
  );
}
