// notificar_recorrencias_hold (18:00): one notice per seller with recurrences on hold, per business date,
// listing the holds no notice announced yet and the count of all. Written to the avisos_vendedores outbox
// together with its delivery job and the mark on the holds it announces (one transaction, under a lock per
// seller), so a rerun sends nothing twice, a hold is announced once even by runs of two dates at once, and a
// failed delivery is retried and visible. Without
// NOTICE_WEBHOOK_URL notices are only recorded.
import { findSellerHolds, insertNotice, lockSellerNotices, markHoldsAnnounced } from '../db/avisos.ts';
import { stableUuid } from '../domain/identifiers.ts';
import { bossDb } from '../queue/boss-executor.ts';
import { NOTICE_DELIVERY_QUEUE } from '../queue/task-names.ts';
import type { PeriodicTask } from './task.ts';

/** Beyond this many new holds a notice lists the first ones (oldest first) and carries the count of all. */
const LIST_LIMIT = 500;

export const notificarRecorrenciasHold: PeriodicTask = {
  name: 'notificar_recorrencias_hold',
  description: 'Avisa cada vendedor, uma vez por dia, das suas recorrências em hold.',
  run: async (ctx) => {
    const deliver = ctx.config.notices.webhookUrl !== undefined;
    const sellers = await findSellerHolds(ctx.pool, LIST_LIMIT);
    let created = 0;
    let existing = 0;
    ctx.progress.vendedores_com_hold = sellers.length;
    for (const { vendedor_id: sellerId } of sellers) {
      ctx.signal.throwIfAborted();
      const written = await ctx.pool.transaction(async (tx) => {
        // Read again under the seller's lock: another date's run may have announced some holds since.
        await lockSellerNotices(tx, sellerId);
        const [seller] = await findSellerHolds(tx, LIST_LIMIT, sellerId);
        // Its holds left hold (or were announced by that other run) meanwhile: nothing to notify.
        if (seller === undefined) return 'none' as const;
        const content = {
          evento: 'recorrencias_em_hold',
          vendedor_id: seller.vendedor_id,
          data_negocio: ctx.date,
          total_em_hold: seller.total_em_hold,
          novas_em_hold: seller.novas_total,
          novas: seller.novas,
        };
        const id = await insertNotice(tx, {
          sellerId: seller.vendedor_id,
          date: ctx.date,
          cutoff: seller.corte_em,
          newCount: seller.novas_total,
          totalCount: seller.total_em_hold,
          content,
          status: deliver ? 'pendente' : 'registrado',
        });
        if (id !== null) await markHoldsAnnounced(tx, seller.novas_lidas);
        if (id !== null && deliver) {
          await ctx.boss.send(
            NOTICE_DELIVERY_QUEUE,
            { avisoId: id },
            { id: stableUuid(`aviso:${id}`), db: bossDb(tx) },
          );
        }
        return id === null ? ('existing' as const) : ('created' as const);
      });
      if (written === 'created') created += 1;
      if (written === 'existing') existing += 1;
      Object.assign(ctx.progress, { avisos_criados: created, avisos_ja_existentes: existing });
    }
    if (!deliver && created > 0) {
      ctx.log.warn(
        { notices: created },
        'NOTICE_WEBHOOK_URL is not set: seller notices were recorded in avisos_vendedores, not sent',
      );
    }
    return {
      vendedores_com_hold: sellers.length,
      avisos_criados: created,
      avisos_ja_existentes: existing,
      vendedores_sem_hold_ao_avisar: sellers.length - created - existing,
      avisos_enviaveis: deliver ? created : 0,
    };
  },
  dryRun: async (ctx) => {
    const sellers = await findSellerHolds(ctx.pool, 0);
    return {
      vendedores_com_hold: sellers.length,
      recorrencias_em_hold: sellers.reduce((sum, seller) => sum + seller.total_em_hold, 0),
    };
  },
};
