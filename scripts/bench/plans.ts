// `node scripts/bench/plans.ts <databaseUrl>`: EXPLAIN ANALYZE of the hot statements of the morning run on a
// seeded benchmark database (the fan-out page, phase 1's lock, phase 3's approval), to show they use their
// indexes and touch a handful of rows whatever the table size. Statements that write run in a rolled-back
// transaction. The README's "Performance" section shows its output for 1,000,000 recurrences.
import pg from 'pg';

const url = process.argv[2];
if (url === undefined) throw new Error('usage: plans.ts <databaseUrl>');
const client = new pg.Client({ connectionString: url });
await client.connect();

async function explain(title: string, text: string, values: unknown[] = []): Promise<void> {
  await client.query('BEGIN');
  try {
    const rows = (
      await client.query<{ 'QUERY PLAN': string }>(
        `EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF, SUMMARY OFF) ${text}`,
        values,
      )
    ).rows;
    process.stdout.write(`-- ${title}\n${rows.map((row) => row['QUERY PLAN']).join('\n')}\n\n`);
  } finally {
    await client.query('ROLLBACK');
  }
}

const [sample] = (
  await client.query<{ id: string; proxima_cobranca: string }>(
    `SELECT id, proxima_cobranca::text FROM checkout_recorrencias WHERE status = 'ativo' ORDER BY id OFFSET 500000 LIMIT 1`,
  )
).rows;
const date = sample?.proxima_cobranca ?? '2031-03-10';
const ids = (
  await client.query<{ id: string }>(
    `SELECT id FROM checkout_recorrencias WHERE status = 'ativo' AND id >= $1 ORDER BY id LIMIT 8`,
    [sample?.id ?? 1],
  )
).rows.map((row) => row.id);
const [{ n }] = (await client.query<{ n: string }>('SELECT count(*) AS n FROM checkout_recorrencias'))
  .rows as [{ n: string }];
process.stdout.write(`-- ${n} recurrences; business date ${date}\n\n`);

await explain(
  'fan-out page (processar_recorrencias_do_dia): 5,000 due recurrences after a keyset cursor',
  `SELECT id, proxima_cobranca::text AS data FROM checkout_recorrencias
   WHERE status = 'ativo' AND proxima_tentativa IS NULL AND proxima_cobranca <= $1::date AND (proxima_cobranca, id) > ($1::date, $2::bigint)
   ORDER BY proxima_cobranca, id LIMIT 5000`,
  [date, sample?.id ?? 0],
);
await explain(
  'phase 1: lock a batch of 8 recurrences with their pending-attempt flag and last attempt number',
  `SELECT r.id, r.proxima_cobranca,
     EXISTS (SELECT 1 FROM checkout_recorrencia_cobrancas c WHERE c.recorrencia_id = r.id AND c.status = 'pendente') AS tem_pendente,
     (SELECT coalesce(max(c.tentativa), 0) FROM checkout_recorrencia_cobrancas c WHERE c.recorrencia_id = r.id AND c.ciclo = r.proxima_cobranca) AS ultima
   FROM checkout_recorrencias r WHERE r.id = ANY($1::int8[]) ORDER BY r.id FOR UPDATE OF r`,
  [ids],
);
await explain(
  'phase 3: approve the attempts of a batch and advance their recurrences (rolled back)',
  `WITH input AS (
     SELECT c.id AS attempt_id, c.recorrencia_id, 'x' AS gateway_ref, (c.ciclo + 30) AS proxima
     FROM checkout_recorrencia_cobrancas c WHERE c.recorrencia_id = ANY($1::int8[]) AND c.status = 'aprovada'
   ), locked AS (
     SELECT r.id FROM checkout_recorrencias r WHERE r.id IN (SELECT recorrencia_id FROM input) ORDER BY r.id FOR UPDATE
   ), resolved AS (
     UPDATE checkout_recorrencia_cobrancas c SET gateway_ref = i.gateway_ref FROM input i
     WHERE c.id = i.attempt_id AND EXISTS (SELECT 1 FROM locked) RETURNING c.id, c.recorrencia_id
   )
   UPDATE checkout_recorrencias r SET proxima_cobranca = i.proxima, ciclos_cobrados = r.ciclos_cobrados + 1
   FROM resolved JOIN input i ON i.attempt_id = resolved.id WHERE r.id = resolved.recorrencia_id`,
  [ids],
);
await client.end();
