// The four periodic tasks in-process against real Postgres: what each enqueues or writes, the once-per-date
// rule, the seller notices (signed, once) and the archive.
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import t, { type Test } from 'tap';
import { findSellerHolds, markHoldsAnnounced } from '../../src/db/avisos.ts';
import { CHARGE_QUEUE, NOTICE_DELIVERY_QUEUE } from '../../src/queue/task-names.ts';
import { verifySignature } from '../../src/notices/webhook.ts';
import {
  chargeJobId,
  enqueueChargeJobs,
  legacyChargeJobId,
  type ChargeJobPayload,
} from '../../src/tasks/charge/charge-jobs.ts';
import { chargeRecurrence } from '../../src/tasks/charge/charge-recurrence.ts';
import { jobBusinessDate, runPeriodicTask, type PeriodicOutcome } from '../../src/tasks/periodic-runner.ts';
import { PERIODIC_TASK_DEFINITIONS } from '../../src/tasks/registry.ts';
import { registerNoticeWorker } from '../../src/tasks/notices/notice-worker.ts';
import type { PeriodicTaskName } from '../../src/queue/task-names.ts';
import { capturedLog } from '../helpers/captured-log.ts';
import { lockWaiters, query } from '../helpers/database.ts';
import { eventually } from '../helpers/processes.ts';
import { webhookReceiver } from '../helpers/webhook-receiver.ts';
import {
  assertLedgerAgrees,
  attemptsOf,
  createHarness,
  insertRecurrence,
  type Harness,
} from '../helpers/harness.ts';

const DAY = '2031-03-10';

function run(
  h: Harness,
  task: PeriodicTaskName,
  date = DAY,
  force = false,
  deps = h.deps,
): Promise<PeriodicOutcome> {
  return runPeriodicTask(PERIODIC_TASK_DEFINITIONS[task], deps, {
    date,
    force,
    jobId: null,
    attempt: 1,
    signal: new AbortController().signal,
  });
}

/** A recurrence of seller loja-a put on hold now. */
async function heldNow(h: Harness): Promise<number> {
  const id = await insertRecurrence(h.pool, { proxima_cobranca: DAY, vendedor_id: 'loja-a' });
  await query(
    h.url,
    `UPDATE checkout_recorrencias SET status = 'hold', motivo_hold = 'teste', hold_em = now() WHERE id = $1`,
    [id],
  );
  return id;
}

/** A connection left inside a transaction that ran `statement` (and holds what it locked) until COMMIT. */
async function holdingTransaction(t: Test, url: string, statement: string, values: unknown[] = []) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  t.teardown(() => client.end());
  await client.query('BEGIN');
  await client.query(statement, values);
  return client;
}

async function chargeJobs(
  h: Harness,
): Promise<Array<{ recorrenciaId: number; motivo: string; dataNegocio: string }>> {
  const rows = await query<{ data: { recorrenciaId: number; motivo: string; dataNegocio: string } }>(
    h.url,
    `SELECT data FROM pgboss.job WHERE name = $1 ORDER BY (data->>'recorrenciaId')::bigint`,
    [CHARGE_QUEUE],
  );
  return rows.map((row) => row.data);
}

t.test(
  'processar enqueues one job per active due recurrence not waiting for a retry, and only once per date',
  async (t) => {
    const h = await createHarness(t);
    const due = [
      await insertRecurrence(h.pool, { proxima_cobranca: DAY }),
      await insertRecurrence(h.pool, { proxima_cobranca: '2031-03-01' }),
    ];
    await insertRecurrence(h.pool, { proxima_cobranca: '2031-03-11' });
    await insertRecurrence(h.pool, { proxima_cobranca: DAY, status: 'hold' });
    await insertRecurrence(h.pool, { proxima_cobranca: DAY, status: 'pausado' });
    await insertRecurrence(h.pool, { proxima_cobranca: DAY, proxima_tentativa: '2031-03-12' });

    const first = await run(h, 'processar_recorrencias_do_dia');
    t.match(first, { status: 'succeeded', counts: { encontradas: 2, enfileiradas: 2, ja_enfileiradas: 0 } });
    t.same(
      (await chargeJobs(h)).map((job) => job.recorrenciaId),
      due,
    );
    t.match(await run(h, 'processar_recorrencias_do_dia'), {
      status: 'skipped',
      reason: 'already_succeeded',
    });
    const forced = await run(h, 'processar_recorrencias_do_dia', DAY, true);
    t.match(
      forced,
      { status: 'succeeded', counts: { encontradas: 2, enfileiradas: 0, ja_enfileiradas: 2 } },
      'forced rerun enqueues nothing new',
    );
    t.equal((await chargeJobs(h)).length, 2);
    const runs = await query<{ status: string; forcada: boolean }>(
      h.url,
      `SELECT status, forcada FROM execucoes_tarefas ORDER BY id`,
    );
    t.same(runs, [
      { status: 'sucesso', forcada: false },
      { status: 'sucesso', forcada: true },
    ]);
  },
);

t.test('processar pages through more recurrences than one page holds', async (t) => {
  const h = await createHarness(t);
  await query(
    h.url,
    `INSERT INTO checkout_recorrencias (vendedor_id, cartao_token, bandeira, valor_centavos, periodicidade, dia_ancora, proxima_cobranca)
     SELECT 'v', 'tok_aprova_' || g, 'visa', 1000, 'mensal', 10, $1::date - (g % 3) FROM generate_series(1, 12001) g`,
    [DAY],
  );
  t.match(await run(h, 'processar_recorrencias_do_dia'), {
    counts: { encontradas: 12001, enfileiradas: 12001 },
  });
  const [count] = await query<{ n: number; distinct: number }>(
    h.url,
    `SELECT count(*)::int AS n, count(DISTINCT data->>'recorrenciaId')::int AS distinct FROM pgboss.job WHERE name = $1`,
    [CHARGE_QUEUE],
  );
  t.same(count, { n: 12001, distinct: 12001 });
  // Sortable ids: in id order (the primary key's), the jobs follow the recurrences, the order they were enqueued in.
  const jobs = await query<{ id: string; data: ChargeJobPayload }>(
    h.url,
    `SELECT id, data FROM pgboss.job WHERE name = $1 ORDER BY id`,
    [CHARGE_QUEUE],
  );
  const recurrences = jobs.map((job) => job.data.recorrenciaId);
  t.same(
    recurrences,
    [...recurrences].sort((a, b) => a - b),
    'the job ids sort as the recurrences',
  );
  t.equal(jobs.filter((job) => job.id !== chargeJobId(job.data)).length, 0, 'every id is the sortable one');
});

t.test(
  'a run an earlier release began (its ids not sortable) goes on with its ids, so nothing is enqueued twice',
  async (t) => {
    const h = await createHarness(t);
    const due = [];
    for (let i = 0; i < 5; i += 1) due.push(await insertRecurrence(h.pool, { proxima_cobranca: DAY }));
    // What the earlier release had enqueued when it stopped: the first two.
    const begun = due.slice(0, 2).map((id): ChargeJobPayload => ({
      recorrenciaId: id,
      dataNegocio: DAY,
      motivo: 'agendada',
    }));
    t.equal(await enqueueChargeJobs(h.boss, begun, { idOf: legacyChargeJobId }), 2);

    const { log, entries } = capturedLog('info');
    t.match(await run(h, 'processar_recorrencias_do_dia', DAY, false, { ...h.deps, log }), {
      status: 'succeeded',
      counts: { encontradas: 5, enfileiradas: 3, ja_enfileiradas: 2 },
    });
    const jobs = await query<{ id: string; data: ChargeJobPayload }>(
      h.url,
      `SELECT id, data FROM pgboss.job WHERE name = $1`,
      [CHARGE_QUEUE],
    );
    t.same(jobs.map((job) => job.data.recorrenciaId).sort(), [...due].sort(), 'one job per recurrence');
    t.equal(
      jobs.filter((job) => job.id !== legacyChargeJobId(job.data)).length,
      0,
      'all with the earlier ids',
    );
    const message = "this date's charge jobs were begun by an earlier release: going on with its job ids";
    const said = entries.filter((entry) => entry.msg === message);
    t.equal(said.length, 1, 'said once');
    t.match(said, [{ date: DAY }]);

    // The next date is a run of this release's own: sortable ids.
    await query(h.url, `UPDATE checkout_recorrencias SET proxima_cobranca = '2031-03-11'`);
    t.match(await run(h, 'processar_recorrencias_do_dia', '2031-03-11'), { counts: { enfileiradas: 5 } });
    const next = await query<{ id: string; data: ChargeJobPayload }>(
      h.url,
      `SELECT id, data FROM pgboss.job WHERE name = $1 AND data->>'dataNegocio' = '2031-03-11'`,
      [CHARGE_QUEUE],
    );
    t.equal(next.length, 5);
    t.equal(next.filter((job) => job.id !== chargeJobId(job.data)).length, 0, 'the next date: sortable ids');
  },
);

t.test(
  'retentar enqueues retries whose date has come; the charge uses a new attempt number and key',
  async (t) => {
    const h = await createHarness(t);
    const id = await insertRecurrence(h.pool, {
      proxima_cobranca: DAY,
      cartao_token: 'tok_recusa_reversivel_3',
    });
    await run(h, 'processar_recorrencias_do_dia');
    const [job] = await h.fetchChargeJobs();
    t.match(await chargeRecurrence(h.deps, job as never), { status: 'declined', decision: 'retry' });
    t.match(
      await run(h, 'retentar_cobrancas_falhadas', DAY),
      { counts: { encontradas: 0 } },
      'not before the retry date',
    );
    t.match(await run(h, 'retentar_cobrancas_falhadas', '2031-03-11'), {
      counts: { encontradas: 1, enfileiradas: 1 },
    });
    const [retry] = await h.fetchChargeJobs();
    t.same(retry?.data, { recorrenciaId: id, dataNegocio: '2031-03-11', motivo: 'retentativa' });
    await chargeRecurrence(h.deps, retry as never);
    t.same(
      (await attemptsOf(h.url, id)).map((a) => a.chave_idempotencia),
      [`rec-${id}-${DAY}-t1`, `rec-${id}-${DAY}-t2`],
    );
    t.match(await run(h, 'retentar_cobrancas_falhadas', '2031-03-11'), {
      status: 'skipped',
      reason: 'already_succeeded',
    });
    await assertLedgerAgrees(t, h.url, h.gateway);
  },
);

const SECRET = 'webhook-secret-0123456789';

t.test(
  'notificar sends one signed notice per seller per date, listing new holds, and never a second',
  async (t) => {
    const receiver = await webhookReceiver(t);
    const h = await createHarness(t, {
      env: { NOTICE_WEBHOOK_URL: receiver.url, NOTICE_WEBHOOK_SECRET: SECRET, TASK_RETRY_DELAY_SECONDS: '1' },
    });
    const old = new Date('2031-03-01T12:00:00Z');
    const a1 = await insertRecurrence(h.pool, {
      proxima_cobranca: DAY,
      vendedor_id: 'loja-a',
      status: 'hold',
      hold_em: old,
    });
    const a2 = await insertRecurrence(h.pool, {
      proxima_cobranca: DAY,
      vendedor_id: 'loja-a',
      status: 'hold',
      hold_em: new Date('2031-03-09T12:00:00Z'),
    });
    await insertRecurrence(h.pool, {
      proxima_cobranca: DAY,
      vendedor_id: 'loja-b',
      status: 'hold',
      hold_em: old,
    });
    await insertRecurrence(h.pool, { proxima_cobranca: DAY, vendedor_id: 'loja-c' });

    t.match(await run(h, 'notificar_recorrencias_hold', '2031-03-09'), {
      counts: { vendedores_com_hold: 2, avisos_criados: 2 },
    });
    await registerNoticeWorker(h.boss, h.deps);
    await eventually(async () => (receiver.received.length >= 2 ? true : undefined));

    const bySeller = new Map(
      receiver.received.map((r) => [(JSON.parse(r.body) as { vendedor_id: string }).vendedor_id, r]),
    );
    const noticeA = bySeller.get('loja-a');
    t.ok(noticeA, 'seller a notified');
    t.notOk(bySeller.has('loja-c'), 'a seller without holds gets nothing');
    const bodyA = JSON.parse(noticeA?.body ?? '{}') as {
      total_em_hold: number;
      novas: Array<{ id: number }>;
    };
    t.equal(bodyA.total_em_hold, 2);
    t.same(
      bodyA.novas.map((n) => n.id),
      [a1, a2],
      'first notice: every hold is new',
    );
    t.ok(
      verifySignature(
        SECRET,
        String(noticeA?.headers['x-recorrencias-assinatura']),
        noticeA?.body ?? '',
        Math.floor(Date.now() / 1000),
      ),
      'the signature verifies with the shared secret',
    );
    t.notOk(
      verifySignature(
        'another-secret-000000000',
        String(noticeA?.headers['x-recorrencias-assinatura']),
        noticeA?.body ?? '',
        Math.floor(Date.now() / 1000),
      ),
    );

    t.match(await run(h, 'notificar_recorrencias_hold', '2031-03-09', true), {
      counts: { avisos_criados: 0, avisos_ja_existentes: 2 },
    });
    const a3 = await insertRecurrence(h.pool, {
      proxima_cobranca: DAY,
      vendedor_id: 'loja-a',
      status: 'hold',
      hold_em: new Date('2031-03-10T12:00:00Z'),
    });
    await run(h, 'notificar_recorrencias_hold', DAY);
    await eventually(async () => (receiver.received.length >= 4 ? true : undefined));
    const nextA = receiver.received
      .slice(2)
      .map(
        (r) =>
          JSON.parse(r.body) as { vendedor_id: string; novas: Array<{ id: number }>; total_em_hold: number },
      )
      .find((n) => n.vendedor_id === 'loja-a');
    t.same(
      nextA?.novas.map((n) => n.id),
      [a3],
      'the next day lists only the holds new since the previous notice',
    );
    t.equal(nextA?.total_em_hold, 3);
    t.equal(receiver.received.length, 4, 'no second notice for a seller and date');
    const statuses = await query<{ status: string }>(h.url, `SELECT DISTINCT status FROM avisos_vendedores`);
    t.same(statuses, [{ status: 'enviado' }]);
  },
);

t.test(
  'a failed notice delivery is retried with backoff and the failure is visible on the notice',
  async (t) => {
    const receiver = await webhookReceiver(t, 1);
    const h = await createHarness(t, {
      env: { NOTICE_WEBHOOK_URL: receiver.url, NOTICE_WEBHOOK_SECRET: SECRET },
    });
    await insertRecurrence(h.pool, {
      proxima_cobranca: DAY,
      vendedor_id: 'loja-a',
      status: 'hold',
      hold_em: new Date(),
    });
    await run(h, 'notificar_recorrencias_hold');
    await registerNoticeWorker(h.boss, h.deps);
    const failed = await eventually(async () => {
      const [row] = await query<{ tentativas: number; ultimo_erro: string | null }>(
        h.url,
        'SELECT tentativas, ultimo_erro FROM avisos_vendedores',
      );
      return row?.ultimo_erro ? row : undefined;
    });
    t.match(failed.ultimo_erro, /HTTP 503/);
    // Let the retry run now instead of after its backoff, once pg-boss has recorded the failure (the notice
    // row shows the error before the job leaves 'active'; bumping it earlier is overwritten by the backoff).
    await eventually(async () => {
      const rows = await query<{ id: string }>(
        h.url,
        `UPDATE pgboss.job SET start_after = now() WHERE name = $1 AND state = 'retry' RETURNING id`,
        [NOTICE_DELIVERY_QUEUE],
      );
      return rows.length > 0 ? rows : undefined;
    });
    const sent = await eventually(async () => {
      const [row] = await query<{ status: string; tentativas: number }>(
        h.url,
        'SELECT status, tentativas FROM avisos_vendedores',
      );
      return row?.status === 'enviado' ? row : undefined;
    });
    t.equal(sent.tentativas, 2);
    t.equal(receiver.received.length, 1);
  },
);

t.test('a delivery job that fails before reaching the webhook is logged with its job id', async (t) => {
  const h = await createHarness(t, {
    env: { NOTICE_WEBHOOK_URL: 'http://127.0.0.1:9/avisos', NOTICE_WEBHOOK_SECRET: SECRET },
  });
  const { log, entries } = capturedLog('error');
  // A payload no notice has: the handler fails on it before any delivery.
  const jobId = await h.boss.send(NOTICE_DELIVERY_QUEUE, { avisoId: 'not-a-number' });
  await registerNoticeWorker(h.boss, { ...h.deps, log });
  const line = await eventually(async () =>
    entries.find((entry) => entry.msg === 'webhook delivery job failed: will retry'),
  );
  t.match(line, { jobId, err: { message: /avisoId/ } });
});

t.test(
  'a hold committed after a notice read the holds, but stamped before its cut-off, is in the next notice',
  async (t) => {
    const h = await createHarness(t);
    const late = await insertRecurrence(h.pool, { proxima_cobranca: DAY, vendedor_id: 'loja-a' });
    const early = await insertRecurrence(h.pool, { proxima_cobranca: DAY, vendedor_id: 'loja-a' });
    const toHold = `UPDATE checkout_recorrencias SET status = 'hold', motivo_hold = 'teste', hold_em = now() WHERE id = $1`;
    // A charge's transaction puts \`late\` on hold, stamped with its start, and commits only after the notice.
    const slow = new pg.Client({ connectionString: h.url });
    await slow.connect();
    t.teardown(() => slow.end());
    await slow.query('BEGIN');
    await slow.query(toHold, [late]);
    await query(h.url, toHold, [early]);
    await run(h, 'notificar_recorrencias_hold', DAY);
    await slow.query('COMMIT');
    await run(h, 'notificar_recorrencias_hold', '2031-03-11');
    const notices = await query<{ data_negocio: string; ids: number[] }>(
      h.url,
      `SELECT data_negocio::text, ARRAY(SELECT (e->>'id')::int FROM jsonb_array_elements(conteudo->'novas') e) AS ids
     FROM avisos_vendedores ORDER BY data_negocio`,
    );
    t.same(notices, [
      { data_negocio: DAY, ids: [early] },
      { data_negocio: '2031-03-11', ids: [late] },
    ]);
    // Days without new holds keep the cut-off: a hold listed days ago is not new again.
    for (const date of ['2031-03-12', '2031-03-13', '2031-03-14'])
      await run(h, 'notificar_recorrencias_hold', date);
    t.same(
      await query(
        h.url,
        `SELECT data_negocio::text, novas_em_hold FROM avisos_vendedores WHERE data_negocio > '2031-03-11' ORDER BY 1`,
      ),
      ['2031-03-12', '2031-03-13', '2031-03-14'].map((date) => ({ data_negocio: date, novas_em_hold: 0 })),
    );
  },
);

t.test('runs of two dates at once announce a hold once', async (t) => {
  const h = await createHarness(t);
  const held = await heldNow(h);
  // A charge holds the recurrence's row lock: whichever run reaches its mark first waits there, inside its
  // notice's transaction, while the other run reads the holds.
  const charge = await holdingTransaction(
    t,
    h.url,
    'SELECT id FROM checkout_recorrencias WHERE id = $1 FOR UPDATE',
    [held],
  );
  // Monday's failed run retried by hand while Tuesday's scheduled one runs.
  const runs = Promise.all([
    run(h, 'notificar_recorrencias_hold', DAY),
    run(h, 'notificar_recorrencias_hold', '2031-03-11'),
  ]);
  await lockWaiters(h.url, 2);
  await charge.query('COMMIT');
  t.match(await runs, [{ status: 'succeeded' }, { status: 'succeeded' }]);
  const listed = await query<{ ids: number[] }>(
    h.url,
    `SELECT ARRAY(SELECT (e->>'id')::int FROM jsonb_array_elements(conteudo->'novas') e) AS ids
     FROM avisos_vendedores ORDER BY ids DESC`,
  );
  t.same(listed, [{ ids: [held] }, { ids: [] }], 'one notice lists the hold, the other has nothing new');
});

t.test(
  'a seller whose holds ended while the run reached them gets no notice, and is counted apart',
  async (t) => {
    const h = await createHarness(t);
    const held = await heldNow(h);
    // Another run holds the seller's notice lock: this run has read the seller's holds and waits for it.
    const other = await holdingTransaction(
      t,
      h.url,
      `SELECT pg_advisory_xact_lock(hashtext('recorrencias:avisos'), hashtext('loja-a'))`,
    );
    const notifying = run(h, 'notificar_recorrencias_hold');
    await lockWaiters(h.url);
    // Meanwhile an operator takes the recurrence off hold.
    await query(
      h.url,
      `UPDATE checkout_recorrencias SET status = 'ativo', motivo_hold = NULL WHERE id = $1`,
      [held],
    );
    await other.query('COMMIT');
    t.match(await notifying, {
      status: 'succeeded',
      counts: {
        vendedores_com_hold: 1,
        avisos_criados: 0,
        avisos_ja_existentes: 0,
        vendedores_sem_hold_ao_avisar: 1,
      },
    });
    t.same(await query(h.url, 'SELECT count(*)::int AS n FROM avisos_vendedores'), [{ n: 0 }], 'no notice');
  },
);

t.test('a notice lists the first 500 new holds and counts all of them', async (t) => {
  const h = await createHarness(t);
  await query(
    h.url,
    `INSERT INTO checkout_recorrencias (vendedor_id, cartao_token, bandeira, valor_centavos, periodicidade, dia_ancora,
       proxima_cobranca, status, motivo_hold, hold_em)
     SELECT 'loja-grande', 'tok_x', 'visa', 100, 'mensal', 10, $1, 'hold', 'teste', now() - make_interval(secs => i)
     FROM generate_series(1, 501) AS i`,
    [DAY],
  );
  t.match(await run(h, 'notificar_recorrencias_hold'), { counts: { avisos_criados: 1 } });
  const [notice] = await query<{ novas_em_hold: number; listed: number; content_count: number }>(
    h.url,
    `SELECT novas_em_hold, jsonb_array_length(conteudo->'novas') AS listed,
       (conteudo->>'novas_em_hold')::int AS content_count
     FROM avisos_vendedores`,
  );
  t.same(notice, { novas_em_hold: 501, listed: 500, content_count: 501 });
  t.match(await run(h, 'notificar_recorrencias_hold', '2031-03-11'), { counts: { avisos_criados: 1 } });
  t.same(
    await query(
      h.url,
      `SELECT novas_em_hold, total_em_hold FROM avisos_vendedores WHERE data_negocio = '2031-03-11'`,
    ),
    [{ novas_em_hold: 0, total_em_hold: 501 }],
    'the next day, none is new: the one not listed was announced in the count',
  );
});

t.test(
  'a hold is announced once: a rerun of an earlier date, and pruned notices, do not make it new again',
  async (t) => {
    const h = await createHarness(t, { env: { NOTICE_RETENTION_DAYS: '1' } });
    const toHold = `UPDATE checkout_recorrencias SET status = 'hold', motivo_hold = 'teste', hold_em = now() WHERE id = $1`;
    const first = await insertRecurrence(h.pool, { proxima_cobranca: DAY, vendedor_id: 'loja-a' });
    const second = await insertRecurrence(h.pool, { proxima_cobranca: DAY, vendedor_id: 'loja-a' });
    await query(h.url, toHold, [first]);
    await run(h, 'notificar_recorrencias_hold', '2031-03-11');
    await query(h.url, toHold, [second]);
    // Monday's run failed; the operator runs it after Tuesday's notice went out.
    await run(h, 'notificar_recorrencias_hold', DAY);
    await run(h, 'notificar_recorrencias_hold', '2031-03-12');
    const listed = () =>
      query<{ data_negocio: string; ids: number[] }>(
        h.url,
        `SELECT data_negocio::text, ARRAY(SELECT (e->>'id')::int FROM jsonb_array_elements(conteudo->'novas') e) AS ids
         FROM avisos_vendedores ORDER BY data_negocio`,
      );
    t.same(await listed(), [
      { data_negocio: DAY, ids: [second] },
      { data_negocio: '2031-03-11', ids: [first] },
      { data_negocio: '2031-03-12', ids: [] },
    ]);
    // Every notice delivered and old: the weekly clean-up deletes them all.
    await query(
      h.url,
      `UPDATE avisos_vendedores SET status = 'enviado', criado_em = now() - interval '3 days'`,
    );
    await run(h, 'limpar_recorrencias_antigas', '2031-03-15');
    t.same(await listed(), [], 'every notice pruned');
    await run(h, 'notificar_recorrencias_hold', '2031-03-16');
    t.same(await listed(), [{ data_negocio: '2031-03-16', ids: [] }], 'no hold is new again');
    // Reactivated and put on hold again: a new hold.
    await query(
      h.url,
      `UPDATE checkout_recorrencias SET status = 'ativo', motivo_hold = NULL, hold_em = NULL WHERE id = $1`,
      [first],
    );
    await query(h.url, toHold, [first]);
    await run(h, 'notificar_recorrencias_hold', '2031-03-17');
    t.same((await listed()).at(-1), { data_negocio: '2031-03-17', ids: [first] });
  },
);

for (const shift of ['+', '-']) {
  t.test(
    `a hold renewed after the notice read it stays new, whenever its transaction began (${shift}1 µs)`,
    async (t) => {
      const h = await createHarness(t);
      const id = await heldNow(h);
      const [read] = await findSellerHolds(h.pool, 500);
      // Reactivated and held again by a transaction that began around the read: a hold_em next to the old one.
      await query(
        h.url,
        `UPDATE checkout_recorrencias SET hold_em = hold_em ${shift} interval '1 microsecond' WHERE id = $1`,
        [id],
      );
      await h.pool.transaction((tx) => markHoldsAnnounced(tx, read?.novas_lidas ?? []));
      const [again] = await findSellerHolds(h.pool, 500);
      t.same(
        again?.novas_lidas.map((hold) => hold.id),
        [id],
        'the notice did not read this hold: still new',
      );
      await h.pool.transaction((tx) => markHoldsAnnounced(tx, again?.novas_lidas ?? []));
      t.match(await findSellerHolds(h.pool, 500), [{ novas_total: 0, total_em_hold: 1 }], 'marked once read');
    },
  );
}

t.test('the table refuses a hold without a date, which the notices could not tell apart', async (t) => {
  const h = await createHarness(t);
  await t.rejects(
    query(
      h.url,
      `INSERT INTO checkout_recorrencias (vendedor_id, cartao_token, bandeira, valor_centavos, periodicidade,
         dia_ancora, proxima_cobranca, status, motivo_hold) VALUES ('v', 't', 'visa', 100, 'mensal', 10, $1, 'hold', 'x')`,
      [DAY],
    ),
    /checkout_recorrencias_hold_tem_data/,
  );
  const id = await insertRecurrence(h.pool, { proxima_cobranca: DAY, vendedor_id: 'loja-a' });
  await t.rejects(
    query(h.url, `UPDATE checkout_recorrencias SET status = 'hold', motivo_hold = 'teste' WHERE id = $1`, [
      id,
    ]),
    /checkout_recorrencias_hold_tem_data/,
  );
  t.same(await query(h.url, 'SELECT status FROM checkout_recorrencias WHERE id = $1', [id]), [
    { status: 'ativo' },
  ]);
});

t.test('without a webhook URL, notices are recorded (and the log says so), not sent', async (t) => {
  const h = await createHarness(t);
  await insertRecurrence(h.pool, {
    proxima_cobranca: DAY,
    vendedor_id: 'loja-a',
    status: 'hold',
    hold_em: new Date(),
  });
  t.match(await run(h, 'notificar_recorrencias_hold'), {
    counts: { avisos_criados: 1, avisos_enviaveis: 0 },
  });
  t.same(await query(h.url, 'SELECT status FROM avisos_vendedores'), [{ status: 'registrado' }]);
  t.same(await query(h.url, `SELECT 1 FROM pgboss.job WHERE name = $1`, [NOTICE_DELIVERY_QUEUE]), []);
});

t.test(
  'limpar archives only ended recurrences older than the limit, with their attempts, and nothing in use',
  async (t) => {
    const h = await createHarness(t, { env: { ARCHIVE_AFTER_DAYS: '180', ARCHIVE_BATCH_SIZE: '2' } });
    const longAgo = new Date(Date.now() - 200 * 86_400_000);
    const archived = [];
    for (let i = 0; i < 3; i += 1) {
      const id = await insertRecurrence(h.pool, {
        proxima_cobranca: DAY,
        status: 'concluido',
        encerrada_em: longAgo,
      });
      await query(
        h.url,
        `INSERT INTO checkout_recorrencia_cobrancas (recorrencia_id, ciclo, tentativa, chave_idempotencia, status, valor_centavos, moeda, cartao_token, data_negocio, resolvida_em)
       VALUES ($1, '2030-01-01', 1, $2, 'aprovada', 100, 'BRL', 't', '2030-01-01', now())`,
        [id, `k-${id}`],
      );
      archived.push(id);
    }
    const cancelled = await insertRecurrence(h.pool, {
      proxima_cobranca: DAY,
      status: 'cancelado',
      encerrada_em: longAgo,
    });
    archived.push(cancelled);
    await query(h.url, `UPDATE checkout_recorrencias SET cobrar_a_partir_de = '2031-01-05' WHERE id = $1`, [
      cancelled,
    ]);
    await query(
      h.url,
      `INSERT INTO checkout_recorrencia_ciclos_pulados (recorrencia_id, ciclo, cobrado_no_ciclo, motivo)
       VALUES ($1, '2030-02-01', '2030-03-01', 'atraso')`,
      [archived[0]],
    );
    const [before] = await query(
      h.url,
      'SELECT to_jsonb(r) AS row FROM checkout_recorrencias r WHERE id = $1',
      [cancelled],
    );
    const attemptBefore = await query(
      h.url,
      'SELECT to_jsonb(c) AS row FROM checkout_recorrencia_cobrancas c WHERE recorrencia_id = $1',
      [archived[0]],
    );
    const skippedBefore = await query(
      h.url,
      'SELECT to_jsonb(p) AS row FROM checkout_recorrencia_ciclos_pulados p WHERE recorrencia_id = $1',
      [archived[0]],
    );
    t.equal(attemptBefore.length + skippedBefore.length, 2, 'one attempt and one skipped cycle to archive');
    const recent = await insertRecurrence(h.pool, {
      proxima_cobranca: DAY,
      status: 'cancelado',
      encerrada_em: new Date(),
    });
    const active = await insertRecurrence(h.pool, { proxima_cobranca: DAY });
    const withPending = await insertRecurrence(h.pool, {
      proxima_cobranca: DAY,
      status: 'cancelado',
      encerrada_em: longAgo,
    });
    await query(
      h.url,
      `INSERT INTO checkout_recorrencia_cobrancas (recorrencia_id, ciclo, tentativa, chave_idempotencia, valor_centavos, moeda, cartao_token, data_negocio)
     VALUES ($1, $2, 1, 'pending-k', 100, 'BRL', 't', $2)`,
      [withPending, DAY],
    );
    const withLiveJob = await insertRecurrence(h.pool, {
      proxima_cobranca: DAY,
      status: 'cancelado',
      encerrada_em: longAgo,
    });
    await h.boss.send(CHARGE_QUEUE, { recorrenciaId: withLiveJob, dataNegocio: DAY, motivo: 'agendada' });

    t.same(
      await PERIODIC_TASK_DEFINITIONS.limpar_recorrencias_antigas.dryRun({ ...h.deps, date: DAY }),
      { recorrencias_a_arquivar: 4 },
      'the dry run counts what the run moves',
    );
    const outcome = await run(h, 'limpar_recorrencias_antigas');
    t.match(outcome, { counts: { recorrencias_arquivadas: 4, cobrancas_arquivadas: 3, lotes: 2 } });
    const live = await query<{ id: number }>(h.url, 'SELECT id FROM checkout_recorrencias ORDER BY id');
    t.same(
      live.map((r) => r.id),
      [recent, active, withPending, withLiveJob],
    );
    const inArchive = await query<{ id: number }>(
      h.url,
      'SELECT id FROM checkout_recorrencias_arquivo ORDER BY id',
    );
    t.same(
      inArchive.map((r) => r.id),
      archived,
    );
    t.same(
      await query(
        h.url,
        `SELECT to_jsonb(a) - 'arquivado_em' AS row FROM checkout_recorrencias_arquivo a WHERE id = $1`,
        [cancelled],
      ),
      [before],
      'every column is archived as it was',
    );
    t.same(
      await query(
        h.url,
        `SELECT to_jsonb(a) - 'arquivado_em' AS row FROM checkout_recorrencia_cobrancas_arquivo a
         WHERE recorrencia_id = $1`,
        [archived[0]],
      ),
      attemptBefore,
      "every column of the recurrence's attempt too",
    );
    t.same(
      await query(
        h.url,
        `SELECT to_jsonb(a) - 'arquivado_em' AS row FROM checkout_recorrencia_ciclos_pulados_arquivo a
         WHERE recorrencia_id = $1`,
        [archived[0]],
      ),
      skippedBefore,
      'and of its skipped cycle',
    );
    t.same(await query(h.url, `SELECT count(*)::int AS n FROM checkout_recorrencia_cobrancas_arquivo`), [
      { n: 3 },
    ]);
    t.same(
      await query(
        h.url,
        `SELECT count(*)::int AS n FROM checkout_recorrencia_cobrancas WHERE recorrencia_id = ANY($1)`,
        [archived],
      ),
      [{ n: 0 }],
    );
  },
);

t.test(
  'limpar prunes delivered checkout events and old Idempotency-Keys, keeping undelivered events',
  async (t) => {
    const h = await createHarness(t, {
      env: { EVENT_RETENTION_DAYS: '90', IDEMPOTENCY_KEY_RETENTION_DAYS: '30' },
    });
    const id = await insertRecurrence(h.pool, { proxima_cobranca: DAY });
    for (const [status, age] of [
      ['enviado', 100],
      ['registrado', 100],
      ['pendente', 100],
      ['falhou', 100],
      ['enviado', 10],
    ] as const) {
      await query(
        h.url,
        `INSERT INTO eventos_checkout (tipo, recorrencia_id, conteudo, status, criado_em)
       VALUES ('recorrencia_em_hold', $1, '{}', $2, now() - make_interval(days => $3))`,
        [id, status, age],
      );
    }
    for (const [key, age] of [
      ['old', 40],
      ['new', 5],
    ] as const) {
      await query(
        h.url,
        `INSERT INTO chaves_idempotencia (quem, chave, operacao, hash_requisicao, status_resposta, corpo_resposta, criado_em)
       VALUES ('checkout', $1, 'criar', 'h', 201, '{}', now() - make_interval(days => $2))`,
        [key, age],
      );
    }
    const outcome = await run(h, 'limpar_recorrencias_antigas');
    t.match(outcome, { counts: { eventos_checkout_removidos: 2, chaves_idempotencia_removidas: 1 } });
    const left = await query<{ status: string }>(h.url, 'SELECT status FROM eventos_checkout ORDER BY id');
    t.same(
      left.map((row) => row.status),
      ['pendente', 'falhou', 'enviado'],
      'undelivered events stay, recent ones too',
    );
    t.same(await query(h.url, 'SELECT chave FROM chaves_idempotencia'), [{ chave: 'new' }]);
  },
);

t.test('limpar prunes old delivered or recorded seller notices, keeping undelivered ones', async (t) => {
  const h = await createHarness(t, { env: { NOTICE_RETENTION_DAYS: '180' } });
  // [seller, business date, status, age in days]
  const notices = [
    ['loja-a', '2030-01-01', 'enviado', 400],
    ['loja-a', '2030-01-02', 'registrado', 399],
    ['loja-a', '2030-01-03', 'falhou', 398],
    ['loja-a', '2030-01-04', 'pendente', 397],
    ['loja-a', '2030-09-01', 'enviado', 190],
    ['loja-a', '2031-03-01', 'enviado', 10],
    ['loja-b', '2030-01-01', 'enviado', 400],
  ] as const;
  for (const [seller, date, status, age] of notices) {
    await query(
      h.url,
      `INSERT INTO avisos_vendedores (vendedor_id, data_negocio, corte_em, novas_em_hold, total_em_hold, conteudo,
         status, criado_em)
       VALUES ($1, $2, now() - make_interval(days => $4), 0, 1, '{}', $3, now() - make_interval(days => $4))`,
      [seller, date, status, age],
    );
  }
  const outcome = await run(h, 'limpar_recorrencias_antigas');
  t.match(outcome, { counts: { avisos_vendedores_removidos: 4 } });
  const left = await query<{ vendedor_id: string; data_negocio: string; status: string }>(
    h.url,
    `SELECT vendedor_id, data_negocio::text, status FROM avisos_vendedores ORDER BY vendedor_id, data_negocio`,
  );
  t.same(
    left,
    [
      { vendedor_id: 'loja-a', data_negocio: '2030-01-03', status: 'falhou' },
      { vendedor_id: 'loja-a', data_negocio: '2030-01-04', status: 'pendente' },
      { vendedor_id: 'loja-a', data_negocio: '2031-03-01', status: 'enviado' },
    ],
    'undelivered notices stay, and recent ones',
  );
});

t.test(
  "a cron-fired job's business date follows the schedule the scheduler stored, not this worker's CRON_*",
  async (t) => {
    const h = await createHarness(t); // this worker's processar cron: the default, 0 8 * * *
    const task = PERIODIC_TASK_DEFINITIONS.processar_recorrencias_do_dia;
    // Fired at 07:30:03 in São Paulo (10:30:03 UTC) on 03-10.
    const job = { id: randomUUID(), data: {}, createdOn: new Date('2031-03-10T10:30:03Z') };
    t.same(
      await jobBusinessDate(task, h.deps, job),
      { date: '2031-03-09', force: false },
      'without a stored schedule: this worker’s cron, whose latest 08:00 was the day before',
    );
    await h.boss.schedule(task.name, '30 7 * * *', null, { tz: 'America/Sao_Paulo' });
    t.same(await jobBusinessDate(task, h.deps, job), { date: '2031-03-10', force: false });
    t.same(await jobBusinessDate(task, h.deps, { ...job, data: { date: '2031-03-01', force: true } }), {
      date: '2031-03-01',
      force: true,
    });
    // The 07:30 tick sent 3 s early, by a scheduler whose clock is ahead: that day's, and said in the log.
    const captured = capturedLog('info');
    const early = { ...job, createdOn: new Date('2031-03-11T10:29:57Z') };
    t.same(await jobBusinessDate(task, { ...h.deps, log: captured.log }, early), {
      date: '2031-03-11',
      force: false,
    });
    t.match(captured.entries, [
      { level: 40, msg: /^tick sent before its occurrence/, jobId: job.id, businessDate: '2031-03-11' },
    ]);
  },
);
