// Queries on vagas_gateway, the slots of the cluster-wide cap on concurrent gateway calls. A slot is a
// lease: taken with SKIP LOCKED (no waiting on each other), freed by its holder, or reclaimed after the
// lease expires when its holder died.
import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';

/** Makes the table hold exactly slots 1..count (workers call it at start; all must agree on the count). */
export async function ensureGatewaySlots(db: CommonQueryMethods, count: number): Promise<void> {
  await db.query(sql.unsafe`
    INSERT INTO vagas_gateway (vaga) SELECT generate_series(1, ${count}) ON CONFLICT DO NOTHING`);
  await db.query(sql.unsafe`DELETE FROM vagas_gateway WHERE vaga > ${count}`);
}

/** Takes a free slot for `jobId` for at most `leaseMs`; null when every slot is taken. */
export async function takeGatewaySlot(
  db: CommonQueryMethods,
  jobId: string,
  leaseMs: number,
): Promise<number | null> {
  return db.maybeOneFirst(sql.type(z.object({ vaga: z.number() }))`
    UPDATE vagas_gateway SET job_id = ${jobId}::uuid, ate = now() + make_interval(secs => ${leaseMs / 1000})
    WHERE vaga = (
      SELECT vaga FROM vagas_gateway WHERE job_id IS NULL OR ate < now()
      LIMIT 1 FOR UPDATE SKIP LOCKED)
    RETURNING vaga`);
}

export async function freeGatewaySlot(db: CommonQueryMethods, slot: number, jobId: string): Promise<void> {
  await db.query(sql.unsafe`
    UPDATE vagas_gateway SET job_id = NULL, ate = NULL WHERE vaga = ${slot} AND job_id = ${jobId}::uuid`);
}
