// sql/metrics.sql, the operators' psql report, run against a migrated database with known rows: through psql
// when it is on PATH (as operators run it) and statement by statement through the pg driver (always, so the
// file stays plain SQL), each time checking the figures; both must print the same tables.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import t, { type Test } from 'tap';
import { readMigrationFiles } from '../../src/db/migrator.ts';
import {
  ALL_QUEUES,
  CHARGE_DEAD_LETTER_QUEUE,
  CHECKOUT_EVENT_QUEUE,
  NOTICE_DELIVERY_QUEUE,
} from '../../src/queue/task-names.ts';
import { query } from '../helpers/database.ts';
import { createHarness, insertRecurrence } from '../helpers/harness.ts';
import {
  psqlOnPath,
  splitStatements,
  table,
  viaDriver,
  viaPsql,
  type ResultSet,
} from '../helpers/sql-file.ts';

const FILE = fileURLToPath(new URL('../../sql/metrics.sql', import.meta.url));
type Seeded = {
  url: string;
  today: string;
  tomorrow: string;
  yesterday: string;
  ids: { pending: number; approved: number };
};

async function seed(t: Test): Promise<Seeded> {
  const h = await createHarness(t);
  const [dates] = await query<{ today: string; tomorrow: string; yesterday: string }>(
    h.url,
    `SELECT d::text AS today, (d + 1)::text AS tomorrow, (d - 1)::text AS yesterday
     FROM (SELECT (now() AT TIME ZONE 'America/Sao_Paulo')::date AS d) x`,
  );
  if (dates === undefined) throw new Error('no dates');
  const { today, tomorrow, yesterday } = dates;
  const approved = await insertRecurrence(h.pool, { proxima_cobranca: today });
  const pending = await insertRecurrence(h.pool, { proxima_cobranca: yesterday });
  await insertRecurrence(h.pool, { proxima_cobranca: tomorrow });
  await insertRecurrence(h.pool, {
    proxima_cobranca: today,
    proxima_tentativa: tomorrow,
    falhas_consecutivas: 1,
  });
  const held = [];
  for (let i = 0; i < 2; i += 1) {
    held.push(
      await insertRecurrence(h.pool, {
        proxima_cobranca: today,
        status: 'hold',
        motivo_hold: 'recusa irreversivel 14',
        hold_em: new Date(),
      }),
    );
  }
  await insertRecurrence(h.pool, { proxima_cobranca: today, status: 'pausado' });

  const attempt = `INSERT INTO checkout_recorrencia_cobrancas (recorrencia_id, ciclo, tentativa, chave_idempotencia, status,
    valor_centavos, moeda, cartao_token, data_negocio, criado_em, resolvida_em)
    VALUES ($1, $2, 1, $3, $4, $5, 'BRL', 'tok_x', $6, now() - interval '45 minutes',
      CASE WHEN $4 = 'pendente' THEN NULL ELSE now() END)`;
  await query(h.url, attempt, [approved, today, `k-${approved}`, 'aprovada', 1000, today]);
  await query(h.url, attempt, [held[0], today, `k-${held[0]}`, 'recusada', 500, today]);
  await query(h.url, attempt, [held[1], today, `k-${held[1]}`, 'recusada', 700, today]);
  await query(h.url, attempt, [pending, yesterday, `k-${pending}`, 'pendente', 300, today]);
  // Yesterday's business: not part of today's figures.
  await query(h.url, attempt, [approved, yesterday, `k-${approved}-old`, 'aprovada', 9999, yesterday]);

  await h.boss.send(CHARGE_DEAD_LETTER_QUEUE, {
    recorrenciaId: pending,
    dataNegocio: today,
    motivo: 'agendada',
  });
  await h.boss.send(CHARGE_DEAD_LETTER_QUEUE, {
    recorrenciaId: approved,
    dataNegocio: today,
    motivo: 'agendada',
  });
  await h.boss.send(NOTICE_DELIVERY_QUEUE, { avisoId: 1 });
  // Finished jobs: one completed now, one 20 minutes ago, one cancelled. None is a live job.
  const finished = [];
  for (const eventoId of [1, 2, 3]) finished.push(await h.boss.send(CHECKOUT_EVENT_QUEUE, { eventoId }));
  await query(
    h.url,
    `UPDATE pgboss.job SET started_on = now() - x.age - interval '1 second', completed_on = now() - x.age,
       state = x.state::pgboss.job_state
     FROM (VALUES ($1::uuid, 'completed', interval '0 minutes'), ($2::uuid, 'completed', interval '20 minutes'),
                  ($3::uuid, 'cancelled', interval '0 minutes')) AS x (id, state, age)
     WHERE name = $4 AND job.id = x.id`,
    [...finished, CHECKOUT_EVENT_QUEUE],
  );

  await query(
    h.url,
    `INSERT INTO execucoes_tarefas (tarefa, data_negocio, status, iniciada_em, finalizada_em, erro) VALUES
       ('processar_recorrencias_do_dia', $1, 'sucesso', now() - interval '1 hour', now() - interval '59 minutes', NULL),
       ('retentar_cobrancas_falhadas', $2, 'falha', now() - interval '1 day', now() - interval '1 day', 'boom')`,
    [today, yesterday],
  );
  await query(
    h.url,
    `INSERT INTO tarefas_pausadas (fila, pausada_por, motivo) VALUES ('enviar_aviso_vendedor', 'ana', 'webhook fora')`,
  );
  await query(
    h.url,
    `INSERT INTO avisos_vendedores (vendedor_id, data_negocio, corte_em, novas_em_hold, total_em_hold, conteudo, status)
     VALUES ('vendedor-1', $1, now(), 1, 1, '{}', 'enviado'), ('vendedor-2', $2, now(), 1, 1, '{}', 'pendente')`,
    [yesterday, today],
  );
  return { url: h.url, today, tomorrow, yesterday, ids: { pending, approved } };
}

function checkFigures(t: Test, sets: ResultSet[], dates: Seeded): void {
  const statements = splitStatements(readFileSync(FILE, 'utf8'));
  t.equal(sets.length, statements.length, 'one table per statement');
  t.same(table(sets, 'recorrencias'), [
    { status: 'ativo', recorrencias: '4' },
    { status: 'hold', recorrencias: '2' },
    { status: 'pausado', recorrencias: '1' },
  ]);
  t.same(
    table(sets, 'devidas_hoje'),
    [{ devidas_hoje: '2' }],
    'due today: the one due today and the late one',
  );
  t.same(table(sets, 'aguardando_retentativa'), [
    { proxima_tentativa: dates.tomorrow, aguardando_retentativa: '1' },
  ]);
  t.match(table(sets, 'em_hold'), [{ motivo_hold: 'recusa irreversivel 14', em_hold: '2' }]);
  t.same(table(sets, 'tentativas'), [
    { tentativa_status: 'aprovada', tentativas: '1', valor_centavos: '1000' },
    { tentativa_status: 'pendente', tentativas: '1', valor_centavos: '300' },
    { tentativa_status: 'recusada', tentativas: '2', valor_centavos: '1200' },
  ]);
  const pendingAttempts = table(sets, 'tentativa_id');
  t.equal(pendingAttempts.length, 1);
  t.match(pendingAttempts[0]?.idade, /^00:4[5-9]:\d\d$/, 'the pending attempt is 45 minutes old');
  const jobs = table(sets, 'estado');
  t.same(
    jobs.filter((row) => row.fila === CHARGE_DEAD_LETTER_QUEUE || row.fila === NOTICE_DELIVERY_QUEUE),
    [
      { fila: CHARGE_DEAD_LETTER_QUEUE, estado: 'created', jobs: '2' },
      { fila: NOTICE_DELIVERY_QUEUE, estado: 'created', jobs: '1' },
    ],
    'pg-boss jobs by queue and state',
  );
  t.same(
    jobs.filter((row) => row.fila === CHECKOUT_EVENT_QUEUE),
    [],
    'completed and cancelled jobs are not among the live ones',
  );
  t.same(
    table(sets, 'concluidos_15m'),
    [{ fila: CHECKOUT_EVENT_QUEUE, concluidos_15m: '1' }],
    'the job completed now; not the one 20 minutes ago, nor the cancelled one',
  );
  t.match(
    table(sets, 'job_id').map((row) => [row['recorrencia_id'], row['envios'], row['bloqueio']]),
    [
      [String(dates.ids.pending), '0', ''],
      [String(dates.ids.approved), '', ''],
    ],
    'two dead-lettered charges, with the pending attempt of the one that has one',
  );
  t.match(table(sets, 'job_id')[0], { tentativa_criada_em: /\d/ });
  t.match(table(sets, 'sucesso_hoje'), [
    { tarefa: 'limpar_recorrencias_antigas', sucesso_hoje: 'f', ultimo_sucesso: '' },
    { tarefa: 'notificar_recorrencias_hold', sucesso_hoje: 'f' },
    { tarefa: 'processar_recorrencias_do_dia', sucesso_hoje: 't', ultimo_sucesso: /\d/ },
    { tarefa: 'retentar_cobrancas_falhadas', sucesso_hoje: 'f', ultimo_sucesso: '' },
  ]);
  t.equal(table(sets, 'execucao_status').length, 2, 'the last task runs');
  t.match(table(sets, 'fila_pausada'), [
    { fila_pausada: 'enviar_aviso_vendedor', pausada_por: 'ana', motivo: 'webhook fora' },
  ]);
  t.match(table(sets, 'aviso_status'), [
    { aviso_status: 'enviado', avisos: '1' },
    { aviso_status: 'pendente', avisos: '1' },
  ]);
}

t.test('every queue list in the file names exactly our queues', async (t) => {
  const lists = [...readFileSync(FILE, 'utf8').matchAll(/name = ANY \(ARRAY\[([^\]]*)\]\)/g)];
  t.equal(lists.length, 2, 'the live jobs and the last 15 minutes');
  for (const [, list] of lists) {
    const names = [...(list ?? '').matchAll(/'([a-z_]+)'/g)].map(([, name]) => name).sort();
    t.same(names, [...ALL_QUEUES].sort());
  }
});

t.test('the file is plain SQL, and the migrator ignores it', async (t) => {
  const text = readFileSync(FILE, 'utf8');
  t.notMatch(text, /^\s*\\/m, 'no psql meta-commands');
  t.ok(splitStatements(text).length >= 10);
  t.notOk(
    (await readMigrationFiles()).some((file) => file.name === 'metrics.sql'),
    'not read as a migration',
  );
  t.same(splitStatements("SELECT 'a;b' -- c;d\n; /* e;f */ SELECT 2;"), ["SELECT 'a;b'", 'SELECT 2']);
});

t.test('sql/metrics.sql through the pg driver, statement by statement', async (t) => {
  const dates = await seed(t);
  checkFigures(t, await viaDriver(dates.url, FILE), dates);
});

t.test('sql/metrics.sql as operators run it: psql when on PATH, else the driver', async (t) => {
  const dates = await seed(t);
  if (!psqlOnPath()) {
    t.comment('psql is not on PATH: running through the pg driver instead');
    checkFigures(t, await viaDriver(dates.url, FILE), dates);
    return;
  }
  const fromPsql = viaPsql(t, dates.url, FILE);
  checkFigures(t, fromPsql, dates);
  // Both clients print the server's text for every value; only the ages measured against now() may move.
  const fromDriver = await viaDriver(dates.url, FILE);
  const mask = (sets: ResultSet[]) =>
    sets.map((set) => ({
      columns: set.columns,
      rows: set.rows.map((row) =>
        row.map((value, i) => (['idade', 'pausada_ha'].includes(set.columns[i] ?? '') ? '?' : value)),
      ),
    }));
  t.same(mask(fromPsql), mask(fromDriver), 'psql and the driver print the same tables');
});
