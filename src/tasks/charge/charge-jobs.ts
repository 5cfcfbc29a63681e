// The per-charge job (`cobrar_recorrencia`): its payload, its deterministic id and the bulk enqueue used by
// the daily runs. The id is made of (business date, recurrence, reason, cycle), so running a task twice for
// the same date, or from two processes at once, enqueues nothing new (pg-boss ignores a duplicate id). It
// sorts in that order, so a date's jobs sort by recurrence, the order the fan-out enqueues the recurrences due
// on the date in: a million inserts append to the queue's primary key instead of landing on random pages of it.
import type { JobInsert, PgBoss } from 'pg-boss';
import type { CommonQueryMethods } from 'slonik';
import { z } from 'zod';
import { daysBetween, isoDate, type IsoDate } from '../../domain/dates.ts';
import { sortableUuid, stableUuid } from '../../domain/identifiers.ts';
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

/** A date as days since 1970-01-01: 24 bits reach the year 47,000; a date before 1970 throws (none is charged). */
const dayNumber = (date: IsoDate) => BigInt(daysBetween('1970-01-01', date));

export function chargeJobId(payload: ChargeJobPayload): string {
  return sortableUuid([
    [dayNumber(payload.dataNegocio), 24],
    [BigInt(payload.recorrenciaId), 64],
    [BigInt(CHARGE_REASONS.indexOf(payload.motivo)), 2],
    [payload.ciclo === undefined ? 0n : 1n, 1],
    [payload.ciclo === undefined ? 0n : dayNumber(payload.ciclo), 24],
  ]);
}

/**
 * The id releases before sortable ids gave the same job. A fan-out that finds its date's first jobs under
 * these ids (a run begun by the previous release, resumed after an upgrade) goes on with them, so that it
 * does not enqueue every recurrence a second time. Remove once no queue holds jobs with these ids.
 */
export function legacyChargeJobId(payload: ChargeJobPayload): string {
  return stableUuid(
    `cobrar:${payload.recorrenciaId}:${payload.dataNegocio}:${payload.motivo}:${payload.ciclo ?? ''}`,
  );
}

export type ChargeJobIdScheme = (payload: ChargeJobPayload) => string;

/**
 * Inserts charge jobs in one statement; duplicates (same id) are ignored. With `db`, the insert joins that
 * transaction. Returns how many were new.
 */
export async function enqueueChargeJobs(
  boss: PgBoss,
  payloads: ChargeJobPayload[],
  { db, idOf = chargeJobId }: { db?: CommonQueryMethods; idOf?: ChargeJobIdScheme } = {},
): Promise<number> {
  if (payloads.length === 0) return 0;
  const jobs = payloads.map((data): JobInsert<ChargeJobPayload> => ({ id: idOf(data), data }));
  const ids = await boss.insert(CHARGE_QUEUE, jobs, {
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
