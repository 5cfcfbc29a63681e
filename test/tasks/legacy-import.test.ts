// Importing the old system's export and rehearsing the cutover, against real Postgres: a generated export of
// 100,000+ rows with bad lines (the good rows land, the bad ones are reported by line, column and reason), a
// second import that changes nothing, rows the new service already charged never overwritten, and the dry
// run of the cutover day matching exactly what the charge run then charges.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { importLegacyExport } from '../../src/ops/legacy-import.ts';
import { chargeRecurrence } from '../../src/tasks/charge/charge-recurrence.ts';
import { runPeriodicTask } from '../../src/tasks/periodic-runner.ts';
import { PERIODIC_TASK_DEFINITIONS } from '../../src/tasks/registry.ts';
import { createAdminHarness, operator } from '../helpers/admin.ts';
import { query } from '../helpers/database.ts';
import { assertLedgerAgrees, testActor } from '../helpers/harness.ts';
import { startService } from '../helpers/processes.ts';

const CUTOVER = '2031-03-10';
const ROWS = 100_000;
const HEADER =
  'id,vendedor_id,cliente_id,token_cartao,bandeira,valor,periodicidade,dia_cobranca,proxima_cobranca,total_parcelas,parcelas_pagas,status,descricao,created_at';

const pad = (n: number) => String(n).padStart(2, '0');

/** One good row. Most are due after the cutover; every 1000th was due before it, every 1000th+500 on it. */
function goodRow(i: number): string {
  const status =
    i % 97 === 0 ? 'cancelada' : i % 89 === 0 ? 'pausada' : i % 83 === 0 ? 'inadimplente' : 'ativa';
  const value = `${(i % 500) + 1}.${pad(i % 100)}`;
  let period = 'mensal';
  let anchor = (i % 28) + 1;
  let date = `2031-${pad(4 + (i % 9))}-${pad(anchor)}`;
  if (i % 1000 === 0) {
    anchor = i % 2000 === 0 ? 10 : 5;
    date = `2031-01-${pad(anchor)}`;
  } else if (i % 1000 === 500) {
    anchor = 10;
    date = CUTOVER;
  } else if (i % 7 === 0) {
    period = 'semanal';
    date = `2031-05-${pad((i % 28) + 1)}`;
  }
  const description = i % 10 === 3 ? `"Plano ${i}, com ""aspas""\r\nsegunda linha"` : `Plano ${i}`;
  const total = i % 5 === 0 ? '' : '24';
  return [
    `L${i}`,
    `loja-${i % 50}`,
    `cli-${i}`,
    `tok_aprova_${i}`,
    i % 3 === 0 ? 'Elo' : 'visa',
    value,
    period,
    period === 'semanal' ? 'NULL' : anchor,
    date,
    total,
    i % 24,
    status,
    description,
    '2030-01-02 03:04:05',
  ].join(',');
}

/** Bad rows, each with the column the report must name. */
const BAD: Array<[string, string]> = [
  ['valor', goodRow(1).replace(',2.01,', ',2.019,')],
  ['valor', goodRow(1).replace(',2.01,', ',"2,01",')],
  ['periodicidade', goodRow(1).replace(',mensal,', ',diaria,')],
  ['proxima_cobranca', goodRow(2).replace(',2031-06-03,', ',2031-02-30,')],
  ['dia_cobranca', goodRow(2).replace(',3,2031-06-03,', ',4,2031-06-03,')],
  ['status', goodRow(2).replace(',ativa,', ',sumida,')],
  ['token_cartao', goodRow(4).replace(',tok_aprova_4,', ',,')],
  ['(linha)', 'L999999,so,tres'],
];

async function generateExport(dir: string) {
  const lines = [HEADER];
  const badLines = new Map<number, string>();
  let physical = 1;
  for (let i = 1; i <= ROWS; i += 1) {
    const row = goodRow(i);
    lines.push(row);
    physical += row.split('\r\n').length;
    if (i % 10_000 === 0) {
      const [column, bad] = BAD[(i / 10_000) % BAD.length] ?? ['', ''];
      lines.push(bad.replace(/^L\d+,/, `X${i},`));
      physical += 1;
      badLines.set(physical, column);
    }
  }
  lines.push('L1,dup,x,tok,visa,1.00,mensal,5,2031-05-05,,0,ativa,dup,');
  physical += 1;
  badLines.set(physical, 'id');
  const file = join(dir, 'export.csv');
  await writeFile(file, `${lines.join('\r\n')}\r\n`);
  return { file, badLines };
}

/** The next dates of two rows the cutover moves: L1000 (due 2031-01-05, anchor 5), L2000 (2031-01-10, anchor 10). */
const movedByTheCutover = (url: string) =>
  query(
    url,
    `SELECT proxima_cobranca::text FROM checkout_recorrencias WHERE id_legado IN ('L1000', 'L2000') ORDER BY id_legado`,
  );

t.test(
  'import 100k rows, report bad lines, reimport changes nothing, the cutover dry run matches the charges',
  async (t) => {
    const h = await createAdminHarness(t);
    h.setNow(new Date(`${CUTOVER}T12:00:00Z`));
    const dir = await mkdtemp(join(tmpdir(), 'import-'));
    t.teardown(() => rm(dir, { recursive: true, force: true }));
    const { file, badLines } = await generateExport(dir);
    const options = { file, cutover: CUTOVER, dryRun: false, mapping: {} };

    const dry = await importLegacyExport(h.deps, testActor('teste'), { ...options, dryRun: true });
    t.match(dry, { dry_run: true, inseridas: ROWS, rejeitadas: badLines.size });
    t.same(
      await query(h.url, 'SELECT count(*)::int AS n FROM checkout_recorrencias'),
      [{ n: 0 }],
      'a dry run writes nothing',
    );

    const first = await importLegacyExport(h.deps, testActor('teste'), options);
    t.comment(`imported ${first.linhas} lines in ${first.segundos} s: ${first.linhas_por_segundo} lines/s`);
    t.match(first, {
      linhas: ROWS + badLines.size,
      validas: ROWS,
      inseridas: ROWS,
      atualizadas: 0,
      inalteradas: 0,
      protegidas: 0,
    });
    t.equal(first.rejeitadas, badLines.size, 'every bad line rejected');
    t.same(
      new Map(first.erros.map((error) => [error.linha, error.coluna])),
      badLines,
      'reported by line number with the column',
    );
    t.ok(
      first.erros.every((error) => error.motivo.length > 0),
      'with a reason',
    );
    t.ok(first.segundos < 60, 'fast enough');
    t.same(await query(h.url, 'SELECT count(*)::int AS n FROM checkout_recorrencias'), [{ n: ROWS }]);
    t.same(
      await query(
        h.url,
        `SELECT valor_centavos::int, bandeira, status, descricao, criado_em = '2030-01-02 03:04:05+00' AS criado
       FROM checkout_recorrencias WHERE id_legado IN ('L3', 'L97', 'L83') ORDER BY id_legado`,
      ),
      [
        {
          valor_centavos: 403,
          bandeira: 'elo',
          status: 'ativo',
          descricao: 'Plano 3, com "aspas"\r\nsegunda linha',
          criado: true,
        },
        {
          valor_centavos: 8483,
          bandeira: 'visa',
          status: 'hold',
          descricao: 'Plano 83, com "aspas"\r\nsegunda linha',
          criado: true,
        },
        { valor_centavos: 9897, bandeira: 'visa', status: 'cancelado', descricao: 'Plano 97', criado: true },
      ],
      'values converted exactly, statuses mapped, quoted fields with commas, quotes and line breaks kept',
    );
    t.same(
      await query(
        h.url,
        `SELECT count(*)::int AS n FROM checkout_recorrencias WHERE status IN ('ativo', 'pausado', 'hold') AND proxima_cobranca < $1`,
        [CUTOVER],
      ),
      [{ n: 0 }],
      'nothing left before the cutover',
    );
    t.same(
      await movedByTheCutover(h.url),
      [{ proxima_cobranca: '2031-04-05' }, { proxima_cobranca: CUTOVER }],
      'moved to the first cycle on or after the cutover',
    );
    t.same(
      await query(h.url, 'SELECT count(*)::int AS n FROM checkout_recorrencia_ciclos_pulados'),
      [{ n: 0 }],
      'not recorded as skipped',
    );

    const second = await importLegacyExport(h.deps, testActor('teste'), options);
    t.match(
      second,
      { inseridas: 0, atualizadas: 0, protegidas: 0, inalteradas: ROWS },
      'a second import changes nothing',
    );
    for (const cutover of [null, '2031-03-01']) {
      await t.rejects(
        importLegacyExport(h.deps, testActor('teste'), { ...options, cutover }),
        { code: 'INVALID_INPUT', message: /an earlier import used the cutover 2031-03-10/ },
        `a re-import with the cutover ${cutover ?? 'left out'} is refused`,
      );
    }
    t.same(
      await movedByTheCutover(h.url),
      [{ proxima_cobranca: '2031-04-05' }, { proxima_cobranca: CUTOVER }],
      'nothing moved back before the cutover',
    );

    // The rehearsal: the dry run of the cutover day, then the real run and its charges.
    const listed: Array<{
      recorrencia_id: number;
      id_legado: string;
      ciclo: string;
      valor_centavos: number;
    }> = [];
    let cursor: string | null | undefined;
    const totals: number[] = [];
    do {
      const response = await h.app.inject({
        method: 'POST',
        url: '/tasks/processar_recorrencias_do_dia/run',
        headers: operator,
        payload: { date: CUTOVER, dryRun: true, limit: 70, ...(cursor ? { cursor } : {}) },
      });
      t.equal(response.statusCode, 200);
      const page = response.json<{ total: number; cobrancas: typeof listed; nextCursor: string | null }>();
      listed.push(...page.cobrancas);
      totals.push(page.total);
      cursor = page.nextCursor;
    } while (cursor);
    t.ok(listed.length > 100, `${listed.length} charges listed for the cutover day`);
    t.same(new Set(totals), new Set([listed.length]), 'every page carries the total of all pages');
    t.same(
      await query(h.url, 'SELECT count(*)::int AS n FROM pgboss.job WHERE name = $1', ['cobrar_recorrencia']),
      [{ n: 0 }],
      'the dry run enqueued nothing',
    );

    const run = await runPeriodicTask(PERIODIC_TASK_DEFINITIONS.processar_recorrencias_do_dia, h.deps, {
      date: CUTOVER,
      force: false,
      jobId: null,
      attempt: 1,
      signal: new AbortController().signal,
    });
    t.match(run, { status: 'succeeded', counts: { enfileiradas: listed.length } });
    for (;;) {
      const jobs = await h.fetchChargeJobs(50);
      if (jobs.length === 0) break;
      await Promise.all(jobs.map((job) => chargeRecurrence(h.deps, job)));
    }
    const charged = await query<{ recorrencia_id: number; ciclo: string; valor_centavos: number }>(
      h.url,
      `SELECT recorrencia_id::int, ciclo::text, valor_centavos::int FROM checkout_recorrencia_cobrancas WHERE status = 'aprovada'`,
    );
    const key = (row: { recorrencia_id: number; ciclo: string; valor_centavos: number }) =>
      `${row.recorrencia_id}:${row.ciclo}:${row.valor_centavos}`;
    t.same(charged.map(key).sort(), listed.map(key).sort(), 'the charges are exactly the dry-run list');
    await assertLedgerAgrees(t, h.url, h.gateway);

    const third = await importLegacyExport(h.deps, testActor('teste'), options);
    t.match(
      third,
      { inseridas: 0, atualizadas: 0, protegidas: listed.length },
      'charged rows are never overwritten',
    );
    t.same(
      await query(
        h.url,
        `SELECT count(*)::int AS n FROM checkout_recorrencias WHERE proxima_cobranca <= $1 AND status = 'ativo'`,
        [CUTOVER],
      ),
      [{ n: 0 }],
      'so a reimport cannot make a charged cycle due again',
    );
  },
);

t.test('the import and dry-run commands as deployed', async (t) => {
  const h = await createAdminHarness(t);
  const dir = await mkdtemp(join(tmpdir(), 'import-cli-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'export.jsonl');
  const rows = [
    {
      id: 7,
      vendedor_id: 'loja',
      token_cartao: 'tok_aprova_7',
      bandeira: 'visa',
      valor: '10.50',
      periodicidade: 'monthly',
      dia_cobranca: 31,
      proxima_cobranca: '2031-02-28',
      status: 'active',
    },
    {
      id: 8,
      vendedor_id: 'loja',
      token_cartao: 'tok_aprova_8',
      bandeira: 'visa',
      valor: 20,
      periodicidade: 'weekly',
      proxima_cobranca: '2031-03-03',
      status: 'ativa',
    },
    {
      id: 9,
      vendedor_id: 'loja',
      token_cartao: 'tok_aprova_9',
      bandeira: 'visa',
      valor: '1.001',
      periodicidade: 'mensal',
      proxima_cobranca: '2031-03-03',
      status: 'ativa',
    },
  ];
  await writeFile(file, `${rows.map((row) => JSON.stringify(row)).join('\n')}\nnot json\n`);
  const env = { DATABASE_URL: h.url, LOG_LEVEL: 'warn' };
  const imported = startService(t, ['import', '--file', file, '--cutover', CUTOVER], env);
  t.equal((await imported.exited).code, 1, 'exit 1: lines were rejected (the valid ones imported)');
  const report = JSON.parse(imported.stdout()) as {
    inseridas: number;
    erros: Array<{ linha: number; coluna: string }>;
  };
  t.equal(report.inseridas, 2);
  t.same(
    report.erros.map((e) => `${e.linha}:${e.coluna}`),
    ['3:valor', '4:(linha)'],
  );
  t.same(
    await query(
      h.url,
      'SELECT id_legado, valor_centavos::int, proxima_cobranca::text FROM checkout_recorrencias ORDER BY id_legado',
    ),
    [
      { id_legado: '7', valor_centavos: 1050, proxima_cobranca: '2031-03-31' },
      { id_legado: '8', valor_centavos: 2000, proxima_cobranca: CUTOVER },
    ],
  );
  const listed = startService(
    t,
    ['run', 'processar_recorrencias_do_dia', '--date', CUTOVER, '--dry-run', '--csv'],
    env,
  );
  t.equal((await listed.exited).code, 0, listed.stderr());
  const [weekly] = await query<{ id: number }>(
    h.url,
    `SELECT id::int FROM checkout_recorrencias WHERE id_legado = '8'`,
  );
  t.same(listed.stdout().trim().split('\n'), [
    'recorrencia_id,id_legado,vendedor_id,ciclo,valor_centavos,moeda,ciclos_pulados,retomada',
    `${weekly?.id},8,loja,${CUTOVER},2000,BRL,0,false`,
  ]);
  t.same(await query(h.url, 'SELECT count(*)::int AS n FROM execucoes_tarefas'), [{ n: 0 }], 'nothing ran');
  // A mistyped cutover (03-17 for 03-01) is replaced only on purpose: the weekly row goes back to 03-03.
  const typo = startService(t, ['import', '--file', file, '--cutover', '2031-03-17'], env);
  t.equal((await typo.exited).code, 1);
  const earlier = ['import', '--file', file, '--cutover', '2031-03-01'];
  const refused = startService(t, earlier, env);
  t.equal((await refused.exited).code, 2, 'an earlier cutover is refused');
  t.match(refused.stderr(), /--replace-cutover/);
  const replaced = startService(t, [...earlier, '--replace-cutover'], env);
  t.equal((await replaced.exited).code, 1, replaced.stderr());
  t.match(JSON.parse(replaced.stdout()), { corte_substituido: '2031-03-17', atualizadas: 1 });
  t.same(
    await query(
      h.url,
      'SELECT id_legado, proxima_cobranca::text FROM checkout_recorrencias ORDER BY id_legado',
    ),
    [
      { id_legado: '7', proxima_cobranca: '2031-03-31' },
      { id_legado: '8', proxima_cobranca: '2031-03-03' },
    ],
  );
  t.match(
    await query(h.url, `SELECT detalhes FROM auditoria_admin WHERE acao = 'import_legacy' ORDER BY id`),
    [{}, {}, { detalhes: { cutover: '2031-03-01', corte_substituido: '2031-03-17' } }],
  );
  const bad = startService(t, ['import', '--file', join(dir, 'missing.csv')], env);
  t.equal((await bad.exited).code, 2, 'an unreadable file is a usage error');
});
