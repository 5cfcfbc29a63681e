// The admin API through `inject` against real Postgres: authentication, validation of hostile input (no 5xx,
// no state change), running tasks, pausing, retrying jobs, reactivating recurrences, the audit trail.
import Fastify from 'fastify';
import t from 'tap';
import { actor, registerAuth } from '../../src/http/auth.ts';
import { CHARGE_DEAD_LETTER_QUEUE, CHARGE_QUEUE } from '../../src/queue/task-names.ts';
import { registerNoticeWorker } from '../../src/tasks/notices/notice-worker.ts';
import { query } from '../helpers/database.ts';
import { eventually } from '../helpers/processes.ts';
import { insertRecurrence } from '../helpers/harness.ts';
import {
  CHECKOUT_TOKEN,
  auth,
  createAdminHarness,
  operator,
  reader,
  type AdminHarness,
} from '../helpers/admin.ts';

const TASK = 'processar_recorrencias_do_dia';

/** Everything a rejected request must leave untouched. */
async function snapshot(h: AdminHarness) {
  const [row] = await query<Record<string, number>>(
    h.url,
    `SELECT (SELECT count(*)::int FROM auditoria_admin) AS audit, (SELECT count(*)::int FROM tarefas_pausadas) AS pauses,
       (SELECT count(*)::int FROM pgboss.job) AS jobs, (SELECT count(*)::int FROM pgboss.schedule) AS schedules,
       (SELECT count(*)::int FROM checkout_recorrencias WHERE status = 'hold') AS holds`,
  );
  return row;
}

t.test('authentication: none, wrong, right, and scopes', async (t) => {
  const h = await createAdminHarness(t);
  t.equal((await h.app.inject({ url: '/healthz' })).statusCode, 200, 'health needs no token');
  t.equal((await h.app.inject({ url: '/readyz' })).statusCode, 200);
  const none = await h.app.inject({ url: '/tasks' });
  t.equal(none.statusCode, 401);
  t.equal(none.headers['www-authenticate'], 'Bearer');
  t.equal(
    (await h.app.inject({ url: '/tasks', headers: auth('wrong-token-0123456789xyz') })).statusCode,
    401,
  );
  t.equal((await h.app.inject({ url: '/tasks', headers: { authorization: 'Basic abc' } })).statusCode, 401);
  t.equal((await h.app.inject({ url: '/tasks', headers: reader })).statusCode, 200, 'a read token reads');
  t.equal((await h.app.inject({ url: '/tasks', headers: operator })).statusCode, 200);
  const before = await snapshot(h);
  const denied = await h.app.inject({ method: 'POST', url: `/tasks/${TASK}/run`, headers: reader });
  t.equal(denied.statusCode, 403, 'a read token cannot run a task');
  t.match(denied.json(), { error: 'forbidden', message: /grafana/ });
  t.equal(
    (await h.app.inject({ method: 'POST', url: `/tasks/${TASK}/pause`, headers: auth(CHECKOUT_TOKEN) }))
      .statusCode,
    403,
    'the checkout token cannot pause tasks',
  );
  t.same(await snapshot(h), before, 'nothing changed');
});

t.test('run a task now: 202 with the job id, then the existing run or job unless forced', async (t) => {
  const h = await createAdminHarness(t);
  h.setNow(new Date('2031-03-09T15:00:00Z'));
  const future = await h.app.inject({
    method: 'POST',
    url: `/tasks/${TASK}/run`,
    headers: operator,
    payload: { date: '2031-03-10' },
  });
  t.equal(future.statusCode, 400, 'a date after today is refused: it would charge now');
  t.match(future.json(), {
    message:
      /date 2031-03-10 is after today's business date \(2031-03-09\).*; to run it anyway, add "allowFutureDate": true/,
  });
  t.same(await query(h.url, 'SELECT 1 FROM pgboss.job WHERE name = $1', [TASK]), [], 'nothing queued');
  h.setNow(new Date('2031-03-12T15:00:00Z'));
  const first = await h.app.inject({
    method: 'POST',
    url: `/tasks/${TASK}/run`,
    headers: operator,
    payload: { date: '2031-03-10' },
  });
  t.equal(first.statusCode, 202);
  const { jobId } = first.json<{ jobId: string }>();
  t.same(await query(h.url, 'SELECT name, data FROM pgboss.job WHERE id = $1', [jobId]), [
    { name: TASK, data: { date: '2031-03-10', force: false } },
  ]);
  const again = await h.app.inject({
    method: 'POST',
    url: `/tasks/${TASK}/run`,
    headers: operator,
    payload: { date: '2031-03-10' },
  });
  t.equal(again.statusCode, 200);
  t.match(again.json(), { status: 'already_queued', jobId });
  // That job fails for good; once the cause is fixed, a new click runs the date again.
  await query(h.url, `UPDATE pgboss.job SET state = 'failed', completed_on = now() WHERE id = $1`, [jobId]);
  const afterFailure = await h.app.inject({
    method: 'POST',
    url: `/tasks/${TASK}/run`,
    headers: operator,
    payload: { date: '2031-03-10' },
  });
  t.equal(afterFailure.statusCode, 202, 'a new job for the date');
  t.not(afterFailure.json<{ jobId: string }>().jobId, jobId);
  await query(
    h.url,
    `INSERT INTO execucoes_tarefas (tarefa, data_negocio, status, finalizada_em) VALUES ($1, '2031-03-11', 'sucesso', now())`,
    [TASK],
  );
  const done = await h.app.inject({
    method: 'POST',
    url: `/tasks/${TASK}/run`,
    headers: operator,
    payload: { date: '2031-03-11' },
  });
  t.match(done.json(), { status: 'already_succeeded', run: { status: 'sucesso' } });
  const doneDryRun = await h.app.inject({
    method: 'POST',
    url: `/tasks/${TASK}/run`,
    headers: operator,
    payload: { date: '2031-03-11', dryRun: true },
  });
  t.match(
    doneDryRun.json(),
    { succeededRun: { status: 'sucesso', data_negocio: '2031-03-11' }, paused: null },
    'a dry run says the date already succeeded',
  );
  const forced = await h.app.inject({
    method: 'POST',
    url: `/tasks/${TASK}/run`,
    headers: operator,
    payload: { date: '2031-03-11', force: true },
  });
  t.equal(forced.statusCode, 202);
  const noBody = await h.app.inject({ method: 'POST', url: `/tasks/${TASK}/run`, headers: operator });
  t.equal(noBody.statusCode, 202, 'the date defaults to today');
  const audit = await query<{ quem: string; acao: string }>(
    h.url,
    'SELECT quem, acao FROM auditoria_admin ORDER BY id',
  );
  t.ok(
    audit.length >= 4 && audit.every((row) => row.quem === 'ana' && row.acao === 'run_task'),
    'every run is audited with the token name',
  );
  t.equal(
    (await h.app.inject({ method: 'POST', url: '/tasks/nao_existe/run', headers: operator })).statusCode,
    404,
  );
});

t.test('a paused task is not run by hand: 409 naming the pause, nothing queued', async (t) => {
  const h = await createAdminHarness(t);
  h.setNow(new Date('2031-03-12T15:00:00Z'));
  const paused = await h.app.inject({
    method: 'POST',
    url: `/tasks/${TASK}/pause`,
    headers: operator,
    payload: { reason: 'volta ao celery' },
  });
  t.equal(paused.statusCode, 200);
  for (const payload of [{ date: '2031-03-10' }, { date: '2031-03-10', force: true }]) {
    const run = await h.app.inject({ method: 'POST', url: `/tasks/${TASK}/run`, headers: operator, payload });
    t.equal(run.statusCode, 409, `refused (force: ${String(payload.force ?? false)})`);
    t.match(run.json(), {
      error: 'conflict',
      message:
        /task processar_recorrencias_do_dia is paused \(by ana since .*: volta ao celery\); resume it first/,
      paused: { by: 'ana', reason: 'volta ao celery' },
    });
  }
  t.same(await query(h.url, 'SELECT 1 FROM pgboss.job WHERE name = $1', [TASK]), [], 'nothing queued');
  t.same(
    await query(h.url, `SELECT 1 FROM auditoria_admin WHERE acao = 'run_task'`),
    [],
    'a refused run is not audited as a run',
  );
  const dryRun = await h.app.inject({
    method: 'POST',
    url: `/tasks/${TASK}/run`,
    headers: operator,
    payload: { date: '2031-03-10', dryRun: true },
  });
  t.equal(dryRun.statusCode, 200, 'a dry run, which runs nothing, still answers');
  t.match(dryRun.json(), { succeededRun: null, paused: { by: 'ana', reason: 'volta ao celery' } });
  await h.app.inject({ method: 'POST', url: `/tasks/${TASK}/resume`, headers: operator });
  const resumed = await h.app.inject({
    method: 'POST',
    url: `/tasks/${TASK}/run`,
    headers: operator,
    payload: { date: '2031-03-10' },
  });
  t.equal(resumed.statusCode, 202, 'resumed, it runs');
});

t.test('hostile input: 4xx that say what was wrong, never 5xx, never a state change', async (t) => {
  const h = await createAdminHarness(t);
  const before = await snapshot(h);
  const cases: Array<{
    method: 'GET' | 'POST';
    url: string;
    payload?: unknown;
    headers?: Record<string, string>;
    status: number;
    field?: RegExp;
  }> = [
    {
      method: 'POST',
      url: `/tasks/${TASK}/run`,
      payload: { date: '2031-02-30' },
      status: 400,
      field: /body\.date/,
    },
    {
      method: 'POST',
      url: `/tasks/${TASK}/run`,
      payload: { date: 20310301 },
      status: 400,
      field: /body\.date/,
    },
    {
      method: 'POST',
      url: `/tasks/${TASK}/run`,
      payload: { date: '2031-03-01', force: 'yes' },
      status: 400,
      field: /body\.force/,
    },
    {
      method: 'POST',
      url: `/tasks/${TASK}/run`,
      payload: { date: '2031-03-01', extra: 1 },
      status: 400,
      field: /extra/,
    },
    {
      method: 'POST',
      url: `/tasks/${TASK}/run`,
      payload: '{"__proto__": {"admin": true}}',
      headers: { 'content-type': 'application/json' },
      status: 400,
    },
    {
      method: 'POST',
      url: `/tasks/${TASK}/run`,
      payload: '{"constructor": {"prototype": {"x": 1}}}',
      headers: { 'content-type': 'application/json' },
      status: 400,
    },
    {
      method: 'POST',
      url: `/tasks/${TASK}/run`,
      payload: '{not json',
      headers: { 'content-type': 'application/json' },
      status: 400,
    },
    { method: 'POST', url: `/tasks/${TASK}/run`, payload: { reason: 'x'.repeat(100_000) }, status: 413 },
    { method: 'POST', url: `/tasks/x'; DROP TABLE checkout_recorrencias; --/run`, status: 404 },
    {
      method: 'POST',
      url: `/tasks/${TASK}/pause`,
      payload: { reason: 1 },
      status: 400,
      field: /body\.reason/,
    },
    { method: 'GET', url: '/jobs?state=exploded', status: 400, field: /querystring\.state/ },
    { method: 'GET', url: '/jobs?limit=0', status: 400, field: /querystring\.limit/ },
    { method: 'GET', url: '/jobs?cursor=bm90LWEtY3Vyc29y', status: 400, field: /cursor/ },
    {
      // A cursor of the right shape with an impossible date and an id of dashes.
      method: 'GET',
      url: `/jobs?cursor=${Buffer.from(`2024-02-30T00:00:00.000Z|${'-'.repeat(36)}`).toString('base64url')}`,
      status: 400,
      field: /cursor/,
    },
    {
      method: 'POST',
      url: '/recorrencias/1/cancelar',
      payload: { force: true },
      status: 400,
      field: /body/,
    },
    {
      method: 'POST',
      url: '/jobs/00000000-0000-4000-8000-000000000000/retry',
      payload: { force: true },
      status: 400,
      field: /body/,
    },
    { method: 'GET', url: "/jobs/1' OR '1'='1", status: 400, field: /params\.id/ },
    { method: 'GET', url: '/jobs/00000000-0000-4000-8000-000000000000', status: 404 },
    { method: 'GET', url: '/recorrencias/abc', status: 400, field: /params\.id/ },
    { method: 'GET', url: '/recorrencias/99999999999999999999', status: 400 },
    // Numbers that are not digits would name another row (0x10 is 16): refused, not converted.
    ...['0x1', '1e0', '%201', '01', '1.0', '-1'].map((id) => ({
      method: 'POST' as const,
      url: `/recorrencias/${id}/cancelar`,
      status: 400,
      field: /params\.id/,
    })),
    {
      method: 'POST',
      url: '/recorrencias/1/cobrancas/0x1/resolver',
      payload: { resultado: 'nao_cobrada', motivo: 'x' },
      status: 400,
      field: /params\.cobranca/,
    },
    { method: 'POST', url: '/avisos/1e0/reenviar', status: 400, field: /params\.id/ },
    { method: 'GET', url: '/jobs?limit=1e1', status: 400, field: /querystring\.limit/ },
    { method: 'GET', url: '/jobs?limit=0x10', status: 400, field: /querystring\.limit/ },
    { method: 'GET', url: '/recorrencias?limit=%2010', status: 400, field: /querystring\.limit/ },
    { method: 'GET', url: '/recorrencias/stats?date=yesterday', status: 400, field: /querystring\.date/ },
    { method: 'POST', url: '/recorrencias/12345/reativar', status: 404 },
    { method: 'GET', url: '/no/such/route', status: 404 },
  ];
  for (const c of cases) {
    const response = await h.app.inject({
      method: c.method,
      url: c.url,
      payload: c.payload as string,
      headers: { ...operator, ...c.headers },
    });
    t.equal(
      response.statusCode,
      c.status,
      `${c.method} ${c.url.slice(0, 60)} -> ${c.status}: ${response.body.slice(0, 200)}`,
    );
    const body = response.json<{ message?: string }>();
    t.type(body.message, 'string', 'the body says what was wrong');
    if (c.field !== undefined) t.match(body.message, c.field, 'and names the field');
  }
  t.same(await snapshot(h), before, 'no rejected request changed anything');
});

t.test('injection strings in stored text are kept verbatim', async (t) => {
  const h = await createAdminHarness(t);
  const reason = `'); DROP TABLE tarefas_pausadas; -- <script>alert(1)</script>`;
  const paused = await h.app.inject({
    method: 'POST',
    url: `/tasks/${TASK}/pause`,
    headers: operator,
    payload: { reason },
  });
  t.equal(paused.statusCode, 200);
  t.same(await query(h.url, 'SELECT motivo FROM tarefas_pausadas'), [{ motivo: reason }]);
  const tasks = await h.app.inject({ url: '/tasks', headers: operator });
  t.equal(
    tasks
      .json<{ tasks: Array<{ name: string; paused: { reason: string } | null }> }>()
      .tasks.find((task) => task.name === TASK)?.paused?.reason,
    reason,
  );
});

t.test('pause and resume a task: schedule dropped and restored, audited, idempotent', async (t) => {
  const h = await createAdminHarness(t);
  await h.app.inject({ method: 'POST', url: `/tasks/${TASK}/resume`, headers: operator });
  t.equal(
    (await query(h.url, 'SELECT 1 FROM pgboss.schedule WHERE name = $1', [TASK])).length,
    1,
    'resume registers the schedule',
  );
  const paused = await h.app.inject({
    method: 'POST',
    url: `/tasks/${TASK}/pause`,
    headers: operator,
    payload: { reason: 'incidente' },
  });
  t.same(paused.json(), { queue: TASK, changed: true });
  t.same(
    await query(h.url, 'SELECT 1 FROM pgboss.schedule WHERE name = $1', [TASK]),
    [],
    'its ticks are skipped',
  );
  const schedules = (await h.app.inject({ url: '/schedules', headers: reader })).json<{
    schedules: Array<{ task: string; paused: boolean; nextRuns: unknown[] }>;
  }>();
  t.match(
    schedules.schedules.find((s) => s.task === TASK),
    { paused: true, nextRuns: [] },
  );
  t.same((await h.app.inject({ method: 'POST', url: `/tasks/${TASK}/pause`, headers: operator })).json(), {
    queue: TASK,
    changed: false,
  });
  const resumed = await h.app.inject({ method: 'POST', url: `/tasks/${TASK}/resume`, headers: operator });
  t.same(resumed.json(), { queue: TASK, changed: true });
  t.equal((await query(h.url, 'SELECT 1 FROM pgboss.schedule WHERE name = $1', [TASK])).length, 1);
  t.equal(
    (
      await h.app.inject({
        method: 'POST',
        url: `/tasks/${CHARGE_DEAD_LETTER_QUEUE}/pause`,
        headers: operator,
      })
    ).statusCode,
    409,
  );
  const actions = await query<{ acao: string }>(
    h.url,
    `SELECT acao FROM auditoria_admin WHERE acao IN ('pause', 'resume') ORDER BY id`,
  );
  t.same(
    actions.map((a) => a.acao),
    ['resume', 'pause', 'pause', 'resume'],
  );
});

t.test('retry a failed job and send a dead-lettered charge back to its queue', async (t) => {
  const h = await createAdminHarness(t);
  const failed = await h.boss.send(TASK, { date: '2031-03-10' }, { retryLimit: 0 });
  const [job] = await h.boss.fetch(TASK);
  await h.boss.fail(TASK, { id: job?.id as string, retryCount: 0 }, { error: 'boom' });
  t.same(await query(h.url, 'SELECT state FROM pgboss.job WHERE id = $1', [failed]), [{ state: 'failed' }]);
  const retried = await h.app.inject({ method: 'POST', url: `/jobs/${failed}/retry`, headers: operator });
  t.match(retried.json(), { action: 'retried' });
  t.same(await query(h.url, 'SELECT state FROM pgboss.job WHERE id = $1', [failed]), [{ state: 'retry' }]);
  t.equal(
    (await h.app.inject({ method: 'POST', url: `/jobs/${failed}/retry`, headers: operator })).statusCode,
    409,
    'only failed jobs',
  );

  const charge = await h.boss.send(
    CHARGE_QUEUE,
    { recorrenciaId: 1, dataNegocio: '2031-03-10', motivo: 'agendada' },
    { retryLimit: 0 },
  );
  const [claimed] = await h.boss.fetch(CHARGE_QUEUE);
  await h.boss.fail(CHARGE_QUEUE, { id: claimed?.id as string, retryCount: 0 }, { error: 'gateway down' });
  const [dead] = await query<{ id: string; years: number }>(
    h.url,
    `SELECT id::text, extract(epoch FROM keep_until - now()) / (365 * 86400) AS years
     FROM pgboss.job WHERE name = $1`,
    [CHARGE_DEAD_LETTER_QUEUE],
  );
  t.ok(dead, `the exhausted charge ${charge} landed in the dead-letter queue`);
  t.ok(
    (dead?.years ?? 0) > 9,
    `it is kept until an operator acts, not deleted after QUEUED_JOB_RETENTION_DAYS (${dead?.years} years)`,
  );
  const queues = (await h.app.inject({ url: '/queues', headers: reader })).json<{
    queues: Array<{ queue: string; deadLettered: number | null }>;
  }>();
  t.equal(queues.queues.find((q) => q.queue === CHARGE_QUEUE)?.deadLettered, 1);
  const redriven = await h.app.inject({ method: 'POST', url: `/jobs/${dead?.id}/retry`, headers: operator });
  t.match(redriven.json(), { action: 'redriven' });
  t.same(
    await query(h.url, `SELECT count(*)::int AS n FROM pgboss.job WHERE name = $1 AND state = 'created'`, [
      CHARGE_QUEUE,
    ]),
    [{ n: 1 }],
    'back in the charge queue',
  );
});

t.test('the whole charge dead-letter queue goes back at once, in pages, audited', async (t) => {
  const h = await createAdminHarness(t);
  // 12,000 exhausted charges (more than one redrive page), as after a long gateway incident.
  await query(
    h.url,
    `INSERT INTO pgboss.job (name, data, policy, source_name)
     SELECT $1, jsonb_build_object('recorrenciaId', n, 'dataNegocio', '2031-03-10', 'motivo', 'agendada'),
       'standard', $2
     FROM generate_series(1, 12000) AS n`,
    [CHARGE_DEAD_LETTER_QUEUE, CHARGE_QUEUE],
  );
  const count = async (queue: string) =>
    (
      await query<{ n: number }>(h.url, 'SELECT count(*)::int AS n FROM pgboss.job WHERE name = $1', [queue])
    )[0]?.n;
  const url = `/queues/${CHARGE_DEAD_LETTER_QUEUE}/redrive`;
  const before = await snapshot(h);
  t.equal((await h.app.inject({ method: 'POST', url, headers: reader })).statusCode, 403, 'operators only');
  const bad = await h.app.inject({ method: 'POST', url, headers: operator, payload: { limit: 0 } });
  t.equal(bad.statusCode, 400);
  t.same(await snapshot(h), before, 'refused requests change nothing');

  const some = await h.app.inject({ method: 'POST', url, headers: operator, payload: { limit: 10 } });
  t.same(some.json(), { queue: CHARGE_DEAD_LETTER_QUEUE, moved: 10 });
  const all = await h.app.inject({ method: 'POST', url, headers: operator });
  t.equal(all.statusCode, 200, all.body);
  t.same(all.json(), { queue: CHARGE_DEAD_LETTER_QUEUE, moved: 11_990 });
  t.equal(await count(CHARGE_DEAD_LETTER_QUEUE), 0, 'the dead-letter queue is empty');
  t.equal(await count(CHARGE_QUEUE), 12_000, 'every job is back in the charge queue');
  t.match(await query(h.url, `SELECT quem, acao, alvo, detalhes FROM auditoria_admin ORDER BY id`), [
    { quem: 'ana', acao: 'redrive_dead_letters', alvo: CHARGE_DEAD_LETTER_QUEUE, detalhes: { moved: 10 } },
    { quem: 'ana', acao: 'redrive_dead_letters', detalhes: { moved: 11_990 } },
  ]);
  const empty = await h.app.inject({ method: 'POST', url, headers: operator });
  t.same(empty.json(), { queue: CHARGE_DEAD_LETTER_QUEUE, moved: 0 }, 'nothing left: nothing moved');

  // A job dead-lettered after the call began (one that went straight back) is left for the next call.
  await query(
    h.url,
    `INSERT INTO pgboss.job (name, data, policy, source_name, created_on)
     VALUES ($1, '{"recorrenciaId": 1, "dataNegocio": "2031-03-10", "motivo": "agendada"}', 'standard', $2,
       now() + interval '1 minute')`,
    [CHARGE_DEAD_LETTER_QUEUE, CHARGE_QUEUE],
  );
  const later = await h.app.inject({ method: 'POST', url, headers: operator });
  t.same(later.json(), { queue: CHARGE_DEAD_LETTER_QUEUE, moved: 0 }, 'only what was there when it began');
});

t.test('reactivate refuses a hold after an irreversible decline of the card it still has', async (t) => {
  const h = await createAdminHarness(t);
  const heldAfter = async (token: string, code = '41') => {
    const id = await insertRecurrence(h.pool, {
      proxima_cobranca: '2031-03-10',
      status: 'hold',
      cartao_token: token,
    });
    await query(
      h.url,
      `INSERT INTO checkout_recorrencia_cobrancas (recorrencia_id, ciclo, tentativa, chave_idempotencia, status,
         valor_centavos, moeda, cartao_token, data_negocio, codigo_recusa, recusa_reversivel, resolvida_em)
       VALUES ($1, '2031-03-10', 1, $2, 'recusada', 4990, 'BRL', $3, '2031-03-10', $4, false, now())`,
      [id, `k-${token}`, token, code],
    );
    return id;
  };
  const reactivate = (id: number, payload?: object) =>
    h.app.inject({
      method: 'POST',
      url: `/recorrencias/${id}/reativar`,
      headers: operator,
      ...(payload === undefined ? {} : { payload }),
    });
  const held = await heldAfter('tok_recusa_irreversivel_1');
  const refused = await reactivate(held);
  t.equal(refused.statusCode, 409);
  t.match(refused.json(), {
    codigo_recusa: '41',
    message:
      /irreversible decline \(code 41\) of the card it still has: change the card \(or what the code was about\) first/,
  });
  await query(h.url, `UPDATE checkout_recorrencias SET cartao_token = 'tok_aprova_novo' WHERE id = $1`, [
    held,
  ]);
  t.equal((await reactivate(held)).statusCode, 200, 'a new card: reactivated');
  // What a PATCH of the amount leaves, `at` relative to the decline's resolution.
  const newAmount = (id: number, cents: number, at: string) =>
    query(
      h.url,
      `WITH changed AS (UPDATE checkout_recorrencias SET valor_centavos = $2 WHERE id = $1)
       INSERT INTO checkout_recorrencias_alteracoes (recorrencia_id, quem, campo, valor_anterior, valor_novo, em)
       VALUES ($1, 'checkout', 'valor_centavos', '4990', $2::text, now() + $3::interval)`,
      [id, cents, at],
    );
  const lost = await heldAfter('tok_recusa_irreversivel_3');
  await newAmount(lost, 5990, '1 minute');
  t.equal((await reactivate(lost)).statusCode, 409, 'a lost card (41) is not about the amount');
  const invalidAmount = await heldAfter('tok_recusa_irreversivel_4', '13');
  await newAmount(invalidAmount, 5990, '1 minute');
  t.equal((await reactivate(invalidAmount)).statusCode, 200, 'an invalid amount (13), changed since');
  // Saved while the declined request was in flight: recorded before the decline, still another amount.
  const changedInFlight = await heldAfter('tok_recusa_irreversivel_5', '13');
  await newAmount(changedInFlight, 5990, '-1 minute');
  t.equal((await reactivate(changedInFlight)).statusCode, 200, 'an amount changed during the charge');
  const changedBack = await heldAfter('tok_recusa_irreversivel_6', '13');
  await newAmount(changedBack, 4990, '1 minute');
  t.equal((await reactivate(changedBack)).statusCode, 409, 'changed back to the declined amount');
  const forced = await heldAfter('tok_recusa_irreversivel_2');
  t.equal((await reactivate(forced, { force: true })).statusCode, 200, 'force: the operator decides');
  t.equal((await reactivate(forced, { forca: true })).statusCode, 400, 'an unknown field is refused');
});

t.test('reactivate only from hold; the recurrence view masks the card token', async (t) => {
  const h = await createAdminHarness(t);
  const held = await insertRecurrence(h.pool, {
    proxima_cobranca: '2031-03-10',
    status: 'hold',
    falhas_consecutivas: 4,
    cartao_token: 'tok_aprova_0123456789',
  });
  const active = await insertRecurrence(h.pool, { proxima_cobranca: '2031-03-10' });
  const ok = await h.app.inject({ method: 'POST', url: `/recorrencias/${held}/reativar`, headers: operator });
  t.same(ok.json(), { id: held, status: 'ativo' });
  t.same(
    await query(
      h.url,
      'SELECT status, falhas_consecutivas, motivo_hold FROM checkout_recorrencias WHERE id = $1',
      [held],
    ),
    [{ status: 'ativo', falhas_consecutivas: 0, motivo_hold: null }],
  );
  const detail = await h.app.inject({ url: `/recorrencias/${held}`, headers: reader });
  t.match(
    detail.json(),
    { alteracoes: [{ campo: 'status', valor_anterior: 'hold', valor_novo: 'ativo' }] },
    'in the recurrence history, beside the audit',
  );
  const conflict = await h.app.inject({
    method: 'POST',
    url: `/recorrencias/${active}/reativar`,
    headers: operator,
  });
  t.equal(conflict.statusCode, 409);
  t.match(conflict.json(), { status: 'ativo', message: /only a recurrence on hold/ });
  const view = await h.app.inject({ url: `/recorrencias/${held}`, headers: reader });
  t.equal(view.json<{ recorrencia: { cartao_token: string } }>().recorrencia.cartao_token, 'tok_…6789');
  t.notMatch(view.body, /0123456789/, 'the whole token never leaves');
});

t.test('stats and jobs pagination', async (t) => {
  const h = await createAdminHarness(t);
  await insertRecurrence(h.pool, { proxima_cobranca: '2031-03-10' });
  await insertRecurrence(h.pool, { proxima_cobranca: '2031-03-10', status: 'hold' });
  await insertRecurrence(h.pool, { proxima_cobranca: '2031-03-10', proxima_tentativa: '2031-03-11' });
  const stats = (
    await h.app.inject({ url: '/recorrencias/stats?date=2031-03-10', headers: reader })
  ).json<unknown>();
  t.match(stats, {
    data_negocio: '2031-03-10',
    por_status: { ativo: 2, hold: 1 },
    devidas_na_data: 1,
    em_hold: 1,
    aguardando_retentativa: 1,
  });
  for (let i = 0; i < 5; i += 1) await h.boss.send(TASK, { date: `2031-04-0${i + 1}` });
  const page1 = (await h.app.inject({ url: `/jobs?task=${TASK}&limit=2`, headers: reader })).json<{
    jobs: Array<{ id: string }>;
    nextCursor: string;
  }>();
  const page2 = (
    await h.app.inject({ url: `/jobs?task=${TASK}&limit=2&cursor=${page1.nextCursor}`, headers: reader })
  ).json<{ jobs: Array<{ id: string }>; nextCursor: string }>();
  const page3 = (
    await h.app.inject({ url: `/jobs?task=${TASK}&limit=2&cursor=${page2.nextCursor}`, headers: reader })
  ).json<{ jobs: Array<{ id: string }>; nextCursor: string | null }>();
  const ids = [...page1.jobs, ...page2.jobs, ...page3.jobs].map((job) => job.id);
  t.equal(new Set(ids).size, 5, 'three pages cover the five jobs once each');
  t.equal(page3.nextCursor, null);
});

t.test('jobs pagination does not skip jobs created within the same millisecond', async (t) => {
  const h = await createAdminHarness(t);
  const ids: string[] = [];
  for (let i = 0; i < 3; i += 1) {
    const id = await h.boss.send(TASK, { date: `2031-05-0${i + 1}` });
    if (id !== null) ids.push(id);
  }
  // Microseconds apart inside one millisecond, as jobs enqueued in a burst are.
  for (const [i, id] of ids.entries())
    await query(h.url, `UPDATE pgboss.job SET created_on = $1::timestamptz WHERE id = $2`, [
      `2031-05-01T10:00:00.1231${i}5Z`,
      id,
    ]);
  const seen: string[] = [];
  let cursor: string | null = null;
  for (let page = 0; page < 4; page += 1) {
    const body: { jobs: Array<{ id: string }>; nextCursor: string | null } = (
      await h.app.inject({
        url: `/jobs?task=${TASK}&limit=1${cursor === null ? '' : `&cursor=${cursor}`}`,
        headers: reader,
      })
    ).json();
    seen.push(...body.jobs.map((job) => job.id));
    cursor = body.nextCursor;
    if (cursor === null) break;
  }
  t.same(seen, [...ids].reverse(), 'one job per page, newest first, none skipped');
});

t.test("the caller's X-Request-Id is kept when it is an id, replaced otherwise, and echoed", async (t) => {
  const h = await createAdminHarness(t);
  const idOf = async (given?: string) =>
    (
      await h.app.inject({
        url: '/queues',
        headers: { ...reader, ...(given === undefined ? {} : { 'x-request-id': given }) },
      })
    ).headers['x-request-id'];
  t.equal(await idOf('lb-7f3a:0042'), 'lb-7f3a:0042');
  const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
  t.match(await idOf(), uuid, 'none given: a new one');
  t.match(await idOf('x'.repeat(65)), uuid, 'too long: a new one');
  t.match(await idOf('a b" forged=1'), uuid, 'not an id: a new one');
  t.not(await idOf(), await idOf(), 'each request its own');
  const refused = await h.app.inject({ url: '/queues', headers: { 'x-request-id': 'trace-1' } });
  t.equal(refused.statusCode, 401);
  t.equal(refused.headers['x-request-id'], 'trace-1', 'refusals carry it too');
});

t.test('without tokens (dev), only requests to localhost from localhost pages are served', async (t) => {
  const app = Fastify();
  t.teardown(() => app.close());
  registerAuth(app, []);
  app.post('/recorrencias/:id/cancelar', async (request) => ({ by: actor(request).name }));
  const post = (headers: { host: string; origin?: string }) =>
    app.inject({ method: 'POST', url: '/recorrencias/1/cancelar', headers });
  for (const headers of [
    { host: '127.0.0.1:8080' },
    { host: 'localhost:8080', origin: 'http://localhost:8080' },
    { host: '[::1]:8080', origin: 'http://127.0.0.1:8080' },
  ]) {
    const response = await post(headers);
    t.equal(response.statusCode, 200, JSON.stringify(headers));
    t.same(response.json(), { by: 'dev' });
  }
  for (const headers of [
    { host: '127.0.0.1:8080', origin: 'https://evil.example' },
    { host: '127.0.0.1:8080', origin: 'null' },
    // Another local web app (a dev server on another port) is another site.
    { host: 'localhost:8080', origin: 'http://localhost:3000' },
    { host: '127.0.0.1:8080', origin: 'http://127.0.0.1' },
    { host: 'rebound.evil.example:8080' },
  ]) {
    const response = await post(headers);
    t.equal(response.statusCode, 403, JSON.stringify(headers));
    t.match(response.json(), { error: 'forbidden', message: /without ADMIN_TOKENS/ });
  }
});

t.test("a failed job's stored error is shown without the query values or row it carried", async (t) => {
  const h = await createAdminHarness(t);
  const id = await h.boss.send(TASK, { date: '2031-05-01' });
  const claimed = (await h.boss.fetch(TASK))[0];
  t.equal(claimed?.id, id);
  await h.boss.fail(
    TASK,
    { id: id as string, retryCount: 0 },
    {
      name: 'NotNullIntegrityConstraintViolationError',
      message: 'Query violates a not NULL integrity constraint.',
      sql: 'INSERT INTO checkout_recorrencias_arquivo SELECT ...',
      values: ['tok_live_4242424242'],
      cause: {
        message: 'null value in column "x" violates not-null constraint',
        detail: 'Failing row contains (7, tok_live_4242424242, null).',
        parameters: ['tok_live_4242424242'],
      },
    },
  );
  const response = await h.app.inject({ url: `/jobs/${id}`, headers: reader });
  t.equal(response.statusCode, 200);
  t.notMatch(response.body, /tok_live/, 'no card token');
  t.match(response.json(), {
    state: 'retry',
    output: {
      message: 'Query violates a not NULL integrity constraint.',
      values: '[redacted]',
      cause: { message: /violates not-null constraint/, detail: '[redacted]', parameters: '[redacted]' },
    },
  });
});

t.test('jobs of every queue are listed newest first across pages, ties broken by id', async (t) => {
  const h = await createAdminHarness(t);
  await h.boss.createQueue('alheia');
  const sent: Array<{ queue: string; at: string }> = [
    { queue: TASK, at: '2031-05-01T10:00:01Z' },
    { queue: CHARGE_QUEUE, at: '2031-05-01T10:00:02Z' },
    { queue: CHARGE_DEAD_LETTER_QUEUE, at: '2031-05-01T10:00:03Z' },
    { queue: CHARGE_QUEUE, at: '2031-05-01T10:00:04Z' },
    { queue: TASK, at: '2031-05-01T10:00:04Z' },
    { queue: CHARGE_DEAD_LETTER_QUEUE, at: '2031-05-01T10:00:04Z' },
    { queue: 'alheia', at: '2031-05-01T10:00:05Z' },
  ];
  for (const job of sent) {
    const id = await h.boss.send(job.queue, { at: job.at });
    await query(h.url, `UPDATE pgboss.job SET created_on = $1::timestamptz WHERE id = $2`, [job.at, id]);
  }
  const expected = await query<{ id: string }>(
    h.url,
    `SELECT id::text FROM pgboss.job WHERE name <> 'alheia' ORDER BY created_on DESC, id DESC`,
  );
  const seen: string[] = [];
  let cursor: string | null = null;
  for (let page = 0; page < 5; page += 1) {
    const body: { jobs: Array<{ id: string }>; nextCursor: string | null } = (
      await h.app.inject({
        url: `/jobs?limit=2${cursor === null ? '' : `&cursor=${cursor}`}`,
        headers: reader,
      })
    ).json();
    seen.push(...body.jobs.map((job) => job.id));
    cursor = body.nextCursor;
    if (cursor === null) break;
  }
  t.equal(expected.length, 6);
  t.same(
    seen,
    expected.map((row) => row.id),
    "every job of ours once, in order; not another service's queue",
  );
  const created = (await h.app.inject({ url: '/jobs?state=created&limit=10', headers: reader })).json<{
    jobs: Array<{ id: string }>;
  }>();
  t.same(
    created.jobs.map((job) => job.id),
    expected.map((row) => row.id),
    'the same through a state filter',
  );
});

t.test('a seller notice that failed for good is queued for delivery again', async (t) => {
  const h = await createAdminHarness(t);
  const [notice] = await query<{ id: string }>(
    h.url,
    `INSERT INTO avisos_vendedores (vendedor_id, data_negocio, corte_em, novas_em_hold, total_em_hold, conteudo, status)
     VALUES ('loja-a', '2031-03-10', now(), 1, 1, '{"novas":[]}', 'falhou') RETURNING id`,
  );
  const response = await h.app.inject({
    method: 'POST',
    url: `/avisos/${String(notice?.id)}/reenviar`,
    headers: operator,
  });
  t.equal(response.statusCode, 200, response.body);
  const { jobId } = response.json<{ jobId: string }>();
  t.same(await query(h.url, 'SELECT name, data FROM pgboss.job WHERE id = $1', [jobId]), [
    { name: 'enviar_aviso_vendedor', data: { avisoId: Number(notice?.id) } },
  ]);
  t.same(await query(h.url, 'SELECT status FROM avisos_vendedores'), [{ status: 'pendente' }]);
  t.same(await query(h.url, `SELECT acao, alvo FROM auditoria_admin WHERE acao = 'redeliver'`), [
    { acao: 'redeliver', alvo: `avisos_vendedores:${String(notice?.id)}` },
  ]);
  // Resent before the workers have NOTICE_WEBHOOK_URL: the row says why it was not delivered.
  await registerNoticeWorker(h.boss, h.deps);
  const row = await eventually(async () => {
    const [entry] = await query<{ tentativas: number; ultimo_erro: string | null }>(
      h.url,
      'SELECT tentativas, ultimo_erro FROM avisos_vendedores',
    );
    return entry === undefined || entry.ultimo_erro === null ? undefined : entry;
  });
  t.match(row, { tentativas: 1, ultimo_erro: 'NOTICE_WEBHOOK_URL is not set on this worker' });
});

t.test('OpenAPI documents the API at /docs', async (t) => {
  const h = await createAdminHarness(t);
  const spec = (await h.app.inject({ url: '/docs/json' })).json<{ paths: Record<string, unknown> }>();
  for (const path of [
    '/tasks',
    '/schedules',
    '/jobs',
    '/jobs/{id}',
    '/queues',
    '/tasks/{name}/run',
    '/recorrencias/stats',
    '/recorrencias/{id}/reativar',
    '/eventos-checkout/{id}/reenviar',
    '/avisos/{id}/reenviar',
  ]) {
    t.ok(spec.paths[path], `${path} is documented`);
  }
  t.equal(
    (await h.app.inject({ url: '/docs' })).statusCode < 400,
    true,
    'the docs page is served without a token',
  );
});
