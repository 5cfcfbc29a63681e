// Queries on vagas_gateway, the slots of the cluster-wide cap on concurrent gateway calls. A slot is a
// lease: taken with SKIP LOCKED (no waiting on each other), freed by its holder, or reclaimed after the
// lease expires when its holder died.
import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';

// Row schemas are built once: zod compiles a schema on first use, so an inline one would cost that on every call.
const SlotRow = z.object({ vaga: z.number() });

const SlotCounts = z.object({ total: z.number(), taken: z.number() });
export type SlotCounts = z.infer<typeof SlotCounts>;

/**
 * Makes the table hold exactly slots 1..count (workers call it at start; all must agree on the count), and
 * returns how many slots it held before: another count means another worker set a different cap.
 */
export async function ensureGatewaySlots(db: CommonQueryMethods, count: number): Promise<number> {
  return db.transaction(async (tx) => {
    const before = await tx.oneFirst(sql.type(z.object({ n: z.number() }))`
      SELECT count(*)::int AS n FROM vagas_gateway`);
    await tx.query(sql.unsafe`
      INSERT INTO vagas_gateway (vaga) SELECT generate_series(1, ${count}) ON CONFLICT DO NOTHING`);
    await tx.query(sql.unsafe`DELETE FROM vagas_gateway WHERE vaga > ${count}`);
    return before;
  });
}

/** The cap's slots: how many there are, and how many a live lease holds now. */
export async function gatewaySlotCounts(db: CommonQueryMethods): Promise<SlotCounts> {
  return db.one(sql.type(SlotCounts)`
    SELECT count(*)::int AS total, (count(*) FILTER (WHERE job_id IS NOT NULL AND ate >= now()))::int AS taken
    FROM vagas_gateway`);
}

/** Takes a free slot for `jobId` for at most `leaseMs`; null when every slot is taken. */
export async function takeGatewaySlot(
  db: CommonQueryMethods,
  jobId: string,
  leaseMs: number,
): Promise<number | null> {
  return db.maybeOneFirst(sql.type(SlotRow)`
    UPDATE vagas_gateway SET job_id = ${jobId}::uuid, ate = now() + make_interval(secs => ${leaseMs / 1000})
    WHERE vaga = (
      SELECT vaga FROM vagas_gateway WHERE job_id IS NULL OR ate < now()
      LIMIT 1 FOR UPDATE SKIP LOCKED)
    RETURNING vaga`);
}

const TakenSlot = z.object({ vaga: z.number(), job_id: z.string() });
export type TakenSlot = z.infer<typeof TakenSlot>;

/**
 * Takes up to one free slot per job in one statement (for a batch of charges); jobs beyond the free slots get
 * none and must wait with takeGatewaySlot.
 */
export async function takeGatewaySlots(
  db: CommonQueryMethods,
  jobIds: string[],
  leaseMs: number,
): Promise<readonly TakenSlot[]> {
  if (jobIds.length === 0) return [];
  const result = await db.query(sql.type(TakenSlot)`
    WITH free AS (
      SELECT vaga FROM vagas_gateway WHERE job_id IS NULL OR ate < now()
      LIMIT ${jobIds.length} FOR UPDATE SKIP LOCKED
    ), numbered AS (
      SELECT vaga, row_number() OVER (ORDER BY vaga) AS n FROM free
    ), jobs AS (
      SELECT job_id, n FROM unnest(${sql.array(jobIds, 'uuid')}) WITH ORDINALITY AS j(job_id, n)
    )
    UPDATE vagas_gateway v SET job_id = jobs.job_id, ate = now() + make_interval(secs => ${leaseMs / 1000})
    FROM numbered JOIN jobs USING (n)
    WHERE v.vaga = numbered.vaga
    RETURNING v.vaga, v.job_id::text AS job_id`);
  return result.rows;
}

export async function freeGatewaySlots(db: CommonQueryMethods, slots: readonly TakenSlot[]): Promise<void> {
  if (slots.length === 0) return;
  await db.query(sql.unsafe`
    UPDATE vagas_gateway v SET job_id = NULL, ate = NULL
    FROM unnest(${sql.array(
      slots.map((slot) => slot.vaga),
      'int4',
    )}, ${sql.array(
      slots.map((slot) => slot.job_id),
      'uuid',
    )}) AS s(vaga, job_id)
    WHERE v.vaga = s.vaga AND v.job_id = s.job_id`);
}
