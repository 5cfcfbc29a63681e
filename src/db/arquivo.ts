// Moves ended recurrences (cancelado, concluido) into the archive tables with their attempts and skipped
// cycles, one bounded batch per statement (so per transaction): rows are deleted only in the statement
// that copies them. Recurrences still in use (a pending attempt, a live charge job) are left alone.
import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';
import { ATTEMPT_COLUMNS } from './cobrancas.ts';
import { RECURRENCE_COLUMNS } from './recorrencias.ts';
import { BOSS_SCHEMA } from './schema-check.ts';

// Row schemas are built once: zod compiles a schema on first use, so an inline one would cost that on every call.
const CountRow = z.object({ n: z.number() });

export const SKIPPED_CYCLE_COLUMNS = sql.fragment`recorrencia_id, ciclo, cobrado_no_ciclo, motivo, registrado_em`;

const Moved = z.object({ recorrencias: z.number(), cobrancas: z.number(), ciclos_pulados: z.number() });
export type Moved = z.infer<typeof Moved>;

/**
 * Which recurrences `r` may be archived: ended more than `olderThanDays` ago, with no pending attempt and no
 * live charge job. The archive and its dry-run count share it, so the count is what a run would move.
 */
function archivable(olderThanDays: number) {
  const job = sql.identifier([BOSS_SCHEMA, 'job']);
  return sql.fragment`r.status IN ('cancelado', 'concluido')
    AND r.encerrada_em < now() - make_interval(days => ${olderThanDays})
    AND NOT EXISTS (SELECT 1 FROM checkout_recorrencia_cobrancas c WHERE c.recorrencia_id = r.id AND c.status = 'pendente')
    AND NOT EXISTS (
      SELECT 1 FROM ${job} j
      WHERE j.name = 'cobrar_recorrencia' AND j.state IN ('created', 'retry', 'active')
        AND j.data ->> 'recorrenciaId' = r.id::text)`;
}

export async function archiveEndedBatch(
  db: CommonQueryMethods,
  olderThanDays: number,
  batchSize: number,
): Promise<Moved> {
  return db.one(sql.type(Moved)`
    WITH alvo AS (
      SELECT r.id FROM checkout_recorrencias r
      WHERE ${archivable(olderThanDays)}
      ORDER BY r.encerrada_em, r.id
      LIMIT ${batchSize}
      FOR UPDATE SKIP LOCKED
    ), cobrancas AS (
      DELETE FROM checkout_recorrencia_cobrancas c USING alvo WHERE c.recorrencia_id = alvo.id RETURNING c.*
    ), cobrancas_arquivadas AS (
      -- Every copy names its columns: an archive column added after arquivado_em is not in the live table's
      -- order, and a copy by position would put values under the wrong names.
      INSERT INTO checkout_recorrencia_cobrancas_arquivo (${ATTEMPT_COLUMNS}, arquivado_em)
      SELECT ${ATTEMPT_COLUMNS}, now() FROM cobrancas RETURNING 1
    ), pulados AS (
      DELETE FROM checkout_recorrencia_ciclos_pulados p USING alvo WHERE p.recorrencia_id = alvo.id RETURNING p.*
    ), pulados_arquivados AS (
      INSERT INTO checkout_recorrencia_ciclos_pulados_arquivo (${SKIPPED_CYCLE_COLUMNS}, arquivado_em)
      SELECT ${SKIPPED_CYCLE_COLUMNS}, now() FROM pulados RETURNING 1
    ), recorrencias AS (
      DELETE FROM checkout_recorrencias r USING alvo WHERE r.id = alvo.id RETURNING r.*
    ), recorrencias_arquivadas AS (
      INSERT INTO checkout_recorrencias_arquivo (${RECURRENCE_COLUMNS}, arquivado_em)
      SELECT ${RECURRENCE_COLUMNS}, now() FROM recorrencias RETURNING 1
    )
    SELECT (SELECT count(*) FROM recorrencias_arquivadas)::int AS recorrencias,
           (SELECT count(*) FROM cobrancas_arquivadas)::int AS cobrancas,
           (SELECT count(*) FROM pulados_arquivados)::int AS ciclos_pulados`);
}

/**
 * Deletes archived rows older than the archive's own retention (the explicit purge step). The old ids of the
 * purged recurrences stay in id_legado_expurgados: an import must not bring them back.
 */
export async function purgeArchiveBatch(
  db: CommonQueryMethods,
  olderThanDays: number,
  batchSize: number,
): Promise<Moved> {
  return db.one(sql.type(Moved)`
    WITH alvo AS (
      SELECT id FROM checkout_recorrencias_arquivo
      WHERE arquivado_em < now() - make_interval(days => ${olderThanDays})
      ORDER BY arquivado_em, id LIMIT ${batchSize}
    ), cobrancas AS (
      DELETE FROM checkout_recorrencia_cobrancas_arquivo c USING alvo WHERE c.recorrencia_id = alvo.id RETURNING 1
    ), pulados AS (
      DELETE FROM checkout_recorrencia_ciclos_pulados_arquivo p USING alvo WHERE p.recorrencia_id = alvo.id RETURNING 1
    ), recorrencias AS (
      DELETE FROM checkout_recorrencias_arquivo r USING alvo WHERE r.id = alvo.id RETURNING r.id_legado
    ), expurgados AS (
      INSERT INTO id_legado_expurgados (id_legado)
      SELECT id_legado FROM recorrencias WHERE id_legado IS NOT NULL
      ON CONFLICT ON CONSTRAINT id_legado_expurgados_pkey DO NOTHING
    )
    SELECT (SELECT count(*) FROM recorrencias)::int AS recorrencias, (SELECT count(*) FROM cobrancas)::int AS cobrancas,
           (SELECT count(*) FROM pulados)::int AS ciclos_pulados`);
}

/** What purgeArchiveBatch would delete now, in all its batches (the same age condition). */
export async function countPurgeable(db: CommonQueryMethods, olderThanDays: number): Promise<Moved> {
  return db.one(sql.type(Moved)`
    WITH alvo AS (
      SELECT id FROM checkout_recorrencias_arquivo WHERE arquivado_em < now() - make_interval(days => ${olderThanDays})
    )
    SELECT (SELECT count(*) FROM alvo)::int AS recorrencias,
      (SELECT count(*) FROM checkout_recorrencia_cobrancas_arquivo c JOIN alvo ON c.recorrencia_id = alvo.id)::int
        AS cobrancas,
      (SELECT count(*) FROM checkout_recorrencia_ciclos_pulados_arquivo p JOIN alvo ON p.recorrencia_id = alvo.id)::int
        AS ciclos_pulados`);
}

/** How many recurrences the archive would move now (the same conditions as archiveEndedBatch). */
export async function countArchivable(db: CommonQueryMethods, olderThanDays: number): Promise<number> {
  return db.oneFirst(sql.type(CountRow)`
    SELECT count(*)::int AS n FROM checkout_recorrencias r WHERE ${archivable(olderThanDays)}`);
}

/** Deletes Idempotency-Key records older than `olderThanDays` (a retry that late creates a new recurrence). */
export async function pruneIdempotencyKeys(
  db: CommonQueryMethods,
  olderThanDays: number,
  batchSize: number,
): Promise<number> {
  return db.oneFirst(sql.type(CountRow)`
    WITH alvo AS (
      SELECT quem, chave FROM chaves_idempotencia WHERE criado_em < now() - make_interval(days => ${olderThanDays})
      ORDER BY criado_em LIMIT ${batchSize}
    ), apagados AS (
      DELETE FROM chaves_idempotencia k USING alvo WHERE k.quem = alvo.quem AND k.chave = alvo.chave RETURNING 1
    )
    SELECT count(*)::int AS n FROM apagados`);
}
