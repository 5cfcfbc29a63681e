// The per-charge job (`cobrar_recorrencia`): its payload, its deterministic id and the bulk enqueue used by
// the daily runs. The id is derived from (recurrence, business date, reason), so running a task twice for
// the same date, or from two processes at once, enqueues nothing new (pg-boss ignores a duplicate id).
import type { JobInsert, PgBoss } from 'pg-boss';
import type { CommonQueryMethods } from 'slonik';
import { z } from 'zod';
import { isoDate, type IsoDate } from '../../domain/dates.ts';
import { stableUuid } from '../../domain/identifiers.ts';
import { bossDb } from '../../queue/boss-executor.ts';
import { CHARGE_QUEUE } from '../../queue/task-names.ts';

export const CHARGE_REASONS = ['agendada', 'retentativa', 'retroativa'] as const;

export const chargeJobPayload = z
  .object({
    recorrenciaId: z.number().int().positive(),
    dataNegocio: isoDate,
    // agendada: the daily run; retentativa: a retry of a declined cycle; retroativa: back-billing chain.
    motivo: z.enum(CHARGE_REASONS),
    // Set on back-billing chain jobs only: the cycle they exist for (keeps their ids distinct).
    ciclo: isoDate.optional(),
  })
  .strict();
export type ChargeJobPayload = z.infer<typeof chargeJobPayload>;

export function chargeJobId(payload: ChargeJobPayload): string {
  return stableUuid(
    `cobrar:${payload.recorrenciaId}:${payload.dataNegocio}:${payload.motivo}:${payload.ciclo ?? ''}`,
  );
}

export function chargeJob(payload: ChargeJobPayload): JobInsert<ChargeJobPayload> {
  return { id: chargeJobId(payload), data: payload };
}

/**
 * Inserts charge jobs in one statement; duplicates (same id) are ignored. With `db`, the insert joins that
 * transaction. Returns how many were new.
 */
export async function enqueueChargeJobs(
  boss: PgBoss,
  payloads: ChargeJobPayload[],
  db?: CommonQueryMethods,
): Promise<number> {
  if (payloads.length === 0) return 0;
  const ids = await boss.insert(CHARGE_QUEUE, payloads.map(chargeJob), {
    returnId: true,
    ...(db === undefined ? {} : { db: bossDb(db) }),
  });
  return ids?.length ?? 0;
}

export function dueCharge(
  recorrenciaId: number,
  dataNegocio: IsoDate,
  motivo: ChargeJobPayload['motivo'],
): ChargeJobPayload {
  return { recorrenciaId, dataNegocio, motivo };
}
