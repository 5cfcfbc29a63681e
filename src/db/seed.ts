// Bulk-inserts realistic recurrences for demos and the benchmark, in SQL (a million rows in seconds): varied
// periodicities, brands, amounts and sellers, all due on one business date, reproducible from a seed.
import { sql, type DatabasePool } from 'slonik';
import { z } from 'zod';
import { dateParts, daysInMonth, type IsoDate } from '../domain/dates.ts';

export type SeedOptions = {
  count: number;
  date: IsoDate;
  sellers: number;
  seed: number;
  /** Card-token prefix; the fake gateway decides outcomes by prefix (`tok_aprova`, `tok_recusa_...`). */
  tokenPrefix?: string;
};

const CHUNK = 100_000;

/**
 * Inserts `count` active recurrences whose next cycle is `date`. Monthly-family anchors agree with the date
 * (the date's day, or any day up to 31 when the date is the last of its month), so the calendar stays exact.
 */
export async function seedRecurrences(
  pool: DatabasePool,
  options: SeedOptions,
): Promise<{ inserted: number; firstId: number | null }> {
  const { year, month, day } = dateParts(options.date);
  const monthEnd = day === daysInMonth(year, month);
  const prefix = options.tokenPrefix ?? 'tok_';
  let inserted = 0;
  let firstId: number | null = null;
  for (let offset = 0; offset < options.count; offset += CHUNK) {
    const size = Math.min(CHUNK, options.count - offset);
    // setseed and the insert share one transaction (one session), so random() is reproducible.
    const result = await pool.transaction(async (tx) => {
      await tx.query(
        sql.unsafe`SELECT setseed(${(((options.seed + offset) % 2_000_000) / 2_000_000) * 2 - 1})`,
      );
      return tx.one(sql.type(z.object({ n: z.number(), first: z.number().nullable() }))`
        WITH novos AS (
          INSERT INTO checkout_recorrencias
            (vendedor_id, cliente_ref, cartao_token, bandeira, valor_centavos, moeda, descricao, periodicidade,
             dia_ancora, proxima_cobranca)
          SELECT
            'vendedor-' || lpad((1 + floor(r.s * ${options.sellers}))::int::text, 4, '0'),
            'cliente-' || (${offset} + r.g),
            ${prefix} || md5((${options.seed} * 1000003 + ${offset} + r.g)::text),
            CASE WHEN r.b < 0.40 THEN 'visa' WHEN r.b < 0.75 THEN 'mastercard' WHEN r.b < 0.90 THEN 'elo'
                 WHEN r.b < 0.96 THEN 'amex' ELSE 'hipercard' END,
            (990 + floor(r.v * 49000))::bigint,
            'BRL',
            'Assinatura plano ' || (1 + floor(r.d * 5))::int,
            r.periodicidade,
            CASE WHEN r.periodicidade = 'semanal' THEN NULL
                 WHEN ${monthEnd} THEN ${day} + floor(r.a * (32 - ${day}))::int
                 ELSE ${day} END,
            ${options.date}::date
          FROM (
            -- random() in this select list runs once per row (an uncorrelated LATERAL would run it once).
            SELECT g, random() AS s, random() AS b, random() AS v, random() AS d, random() AS a,
              CASE WHEN q < 0.70 THEN 'mensal' WHEN q < 0.80 THEN 'semanal' WHEN q < 0.88 THEN 'trimestral'
                   WHEN q < 0.92 THEN 'semestral' ELSE 'anual' END AS periodicidade
            FROM (SELECT g, random() AS q FROM generate_series(1, ${size}) AS g) x
          ) r
          RETURNING id
        )
        SELECT count(*)::int AS n, min(id) AS first FROM novos`);
    });
    inserted += result.n;
    firstId ??= result.first;
  }
  return { inserted, firstId };
}
