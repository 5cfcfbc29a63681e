// The recurrence lifecycle API for the checkout, through `inject` against real Postgres: creation with
// Idempotency-Key (required of the checkout), validation, listing with a cursor, changes and their safety rules, every status
// transition (allowed and refused), token scopes, the history and the audit trail.
import { randomUUID } from 'node:crypto';
import t from 'tap';
import { query } from '../helpers/database.ts';
import { chargeOnce, insertRecurrence, skippedCyclesOf } from '../helpers/harness.ts';
import {
  CHECKOUT_TOKEN,
  auth,
  createAdminHarness,
  operator,
  reader,
  type AdminHarness,
} from '../helpers/admin.ts';

const checkout = auth(CHECKOUT_TOKEN);
const TODAY = new Date('2031-03-01T15:00:00Z');

const NEW = {
  vendedor_id: 'loja-1',
  cliente_ref: 'cliente-9',
  cartao_token: 'tok_aprova_abcdef123',
  bandeira: 'visa',
  valor_centavos: 4990,
  periodicidade: 'mensal',
  dia_ancora: 31,
  proxima_cobranca: '2031-04-30',
  total_ciclos: 12,
  descricao: 'Plano mensal',
  referencia_externa: 'pedido-77',
};

type Body = { recorrencia: { id: number; status: string; proxima_cobranca: string; cartao_token: string } };

async function harness(t: Parameters<typeof createAdminHarness>[0]): Promise<AdminHarness> {
  const h = await createAdminHarness(t);
  h.setNow(TODAY);
  return h;
}

/** A creation; the checkout's own carry a fresh Idempotency-Key unless the headers say otherwise. */
async function create(
  h: AdminHarness,
  body: object = NEW,
  headers: Record<string, string> = { ...checkout, 'idempotency-key': randomUUID() },
) {
  return h.app.inject({ method: 'POST', url: '/recorrencias', headers, payload: body });
}

async function recurrenceRow(h: AdminHarness, id: number) {
  const [row] = await query(
    h.url,
    `SELECT status, proxima_cobranca::text, proxima_tentativa::text, falhas_consecutivas
     FROM checkout_recorrencias WHERE id = $1`,
    [id],
  );
  return row;
}

async function count(h: AdminHarness, table = 'checkout_recorrencias'): Promise<number> {
  const [row] = await query<{ n: number }>(h.url, `SELECT count(*)::int AS n FROM ${table}`);
  return row?.n ?? 0;
}

t.test('create: 201 with the recurrence, its token masked, audited', async (t) => {
  const h = await harness(t);
  const response = await create(h);
  t.equal(response.statusCode, 201, response.body);
  const body = response.json<Body>();
  t.match(body.recorrencia, {
    vendedor_id: 'loja-1',
    status: 'ativo',
    dia_ancora: 31,
    proxima_cobranca: '2031-04-30',
    moeda: 'BRL',
    referencia_externa: 'pedido-77',
  });
  t.equal(body.recorrencia.cartao_token, 'tok_…f123', 'the card token reference is masked');
  t.equal(response.headers.location, `/recorrencias/${body.recorrencia.id}`);
  t.same(await query(h.url, 'SELECT quem, acao, pedido_id, origem FROM auditoria_admin'), [
    {
      quem: 'checkout',
      acao: 'create_recurrence',
      pedido_id: response.headers['x-request-id'],
      origem: 'http:127.0.0.1',
    },
  ]);
  const weekly = await create(h, {
    ...NEW,
    periodicidade: 'semanal',
    dia_ancora: undefined,
    proxima_cobranca: '2031-03-05',
  });
  t.equal(weekly.statusCode, 201, 'weekly needs no anchor');
  const keyless = await create(h, NEW, checkout);
  t.equal(keyless.statusCode, 400, 'the checkout must send an Idempotency-Key');
  t.match(keyless.json(), { error: 'invalid_request', message: /idempotency-key: required/ });
  t.equal(await count(h), 2, 'nothing written without it');
  t.equal((await create(h, NEW, operator)).statusCode, 201, 'an operator creating by hand may go without');
});

t.test('create: incoherent input is refused with the field, and nothing is written', async (t) => {
  const h = await harness(t);
  const cases: Array<[string, object, RegExp]> = [
    ['no anchor for monthly', { ...NEW, dia_ancora: undefined }, /dia_ancora: required/],
    ['anchor on a weekly', { ...NEW, periodicidade: 'semanal' }, /weekly recurrences have no anchor/],
    ['date off the anchor', { ...NEW, dia_ancora: 10 }, /does not fall on anchor day 10/],
    ['31 in a 31-day month must be the 31st', { ...NEW, proxima_cobranca: '2031-05-30' }, /anchor day 31/],
    ['a date in the past', { ...NEW, dia_ancora: 28, proxima_cobranca: '2031-02-28' }, /before today/],
    ['no such date', { ...NEW, proxima_cobranca: '2031-02-30' }, /real calendar date/],
    ['zero amount', { ...NEW, valor_centavos: 0 }, /valor_centavos/],
    ['fractional cents', { ...NEW, valor_centavos: 49.9 }, /valor_centavos/],
    ['unknown periodicity', { ...NEW, periodicidade: 'diaria' }, /periodicidade/],
    ['unknown field', { ...NEW, status: 'hold' }, /status|Unrecognized/i],
    ['upper-case brand', { ...NEW, bandeira: 'VISA' }, /bandeira/],
    [
      'a NUL character (Postgres cannot store it)',
      { ...NEW, descricao: 'a\u0000b' },
      /body\.descricao: must not contain NUL/,
    ],
  ];
  for (const [name, body, message] of cases) {
    const response = await create(h, body);
    t.equal(response.statusCode, 400, name);
    t.match(response.json(), { error: /invalid/, message }, name);
  }
  t.ok(
    (await create(h, { ...NEW, dia_ancora: 31, proxima_cobranca: '2031-06-30' })).statusCode === 201,
    'anchor 31 on a 30-day month',
  );
  t.equal(await count(h), 1);
  const listed = await h.app.inject({
    method: 'GET',
    url: '/recorrencias?vendedor_id=%00',
    headers: checkout,
  });
  t.equal(listed.statusCode, 400, 'a NUL in the query string');
  t.match(listed.json(), { message: /querystring\.vendedor_id: must not contain NUL/ });
  // 60 KB of nested arrays, under the body limit: a recursive walk overflowed the stack (a 500).
  const deep = await h.app.inject({
    method: 'POST',
    url: '/recorrencias',
    headers: { ...checkout, 'content-type': 'application/json' },
    payload: `{"descricao":${'['.repeat(30_000)}${']'.repeat(30_000)}}`,
  });
  t.equal(deep.statusCode, 400, 'input nested past any request of this API');
  t.match(deep.json(), { error: 'invalid_request', message: /nested deeper than 32 levels/ });
  t.equal(await count(h), 1, 'nothing written');
});

t.test(
  'Idempotency-Key: a repeat answers the first result, another body is refused, keys are per token',
  async (t) => {
    const h = await harness(t);
    const key = { ...checkout, 'idempotency-key': 'pedido-77-criar' };
    const first = await create(h, NEW, key);
    t.equal(first.statusCode, 201);
    const again = await create(h, { ...NEW }, key);
    t.equal(again.statusCode, 201, 'same status');
    t.equal(again.body, first.body, 'same body, byte for byte');
    t.equal(again.headers['idempotent-replayed'], 'true');
    const reordered = Object.fromEntries(Object.entries(NEW).reverse());
    t.equal((await create(h, reordered, key)).body, first.body, 'the order of the fields does not matter');
    t.equal(await count(h), 1, 'one recurrence');
    const other = await create(h, { ...NEW, valor_centavos: 5990 }, key);
    t.equal(other.statusCode, 422, 'the same key with another body');
    t.match(other.json(), { error: 'idempotency_key_reused', message: /Idempotency-Key/ });
    const operatorKey = await create(h, NEW, { ...operator, 'idempotency-key': 'pedido-77-criar' });
    t.equal(operatorKey.statusCode, 201);
    t.not(
      operatorKey.json<Body>().recorrencia.id,
      first.json<Body>().recorrencia.id,
      'keys are scoped to the token name',
    );
    t.equal(await count(h), 2);
    const failed = await create(h, { ...NEW, dia_ancora: 5 }, { ...checkout, 'idempotency-key': 'k2' });
    t.equal(failed.statusCode, 400);
    t.equal(
      (await create(h, NEW, { ...checkout, 'idempotency-key': 'k2' })).statusCode,
      201,
      'a refused request does not keep its key',
    );
    t.equal(
      (await create(h, NEW, { ...checkout, 'idempotency-key': 'é' })).statusCode,
      400,
      'keys are visible ASCII',
    );
    const racing = await Promise.all(
      Array.from({ length: 8 }, () => create(h, NEW, { ...checkout, 'idempotency-key': 'corrida' })),
    );
    t.same(new Set(racing.map((r) => r.body)).size, 1, 'eight concurrent requests, one answer');
    t.equal(await count(h), 4, 'and one recurrence');
  },
);

t.test('list: filters and a cursor over every page', async (t) => {
  const h = await harness(t);
  for (let i = 0; i < 5; i += 1) {
    await insertRecurrence(h.pool, {
      proxima_cobranca: `2031-03-1${i}`,
      vendedor_id: i % 2 === 0 ? 'par' : 'impar',
    });
  }
  await insertRecurrence(h.pool, { proxima_cobranca: '2031-03-10', vendedor_id: 'par', status: 'pausado' });
  const page = async (url: string) =>
    (await h.app.inject({ url, headers: reader })).json<{
      recorrencias: Array<{ id: number }>;
      nextCursor: string | null;
    }>();
  const first = await page('/recorrencias?vendedor_id=par&limit=2');
  t.equal(first.recorrencias.length, 2);
  const second = await page(`/recorrencias?vendedor_id=par&limit=2&cursor=${first.nextCursor ?? ''}`);
  t.equal(second.recorrencias.length, 2);
  t.equal(second.nextCursor, null, 'four rows for par: two pages, no third');
  const ids = [...first.recorrencias, ...second.recorrencias].map((r) => r.id);
  t.same(
    ids,
    [...ids].sort((a, b) => b - a),
    'newest first',
  );
  t.equal(new Set(ids).size, 4);
  t.equal((await page('/recorrencias?status=pausado')).recorrencias.length, 1);
  t.equal(
    (await page('/recorrencias?proxima_cobranca_ate=2031-03-11')).recorrencias.length,
    3,
    'due on or before',
  );
  t.equal((await h.app.inject({ url: '/recorrencias?cursor=bogus', headers: reader })).statusCode, 400);
  t.equal((await h.app.inject({ url: '/recorrencias?status=nenhum', headers: reader })).statusCode, 400);
});

t.test('transitions: every allowed one, every refused one, history and audit', async (t) => {
  const h = await harness(t);
  const id = (await create(h)).json<Body>().recorrencia.id;
  const act = (action: string, headers = checkout) =>
    h.app.inject({ method: 'POST', url: `/recorrencias/${id}/${action}`, headers });
  const expect = async (action: string, status: number, state: string, mudou?: boolean) => {
    const response = await act(action);
    t.equal(response.statusCode, status, `${action} -> ${status}`);
    if (status === 200) t.match(response.json(), { recorrencia: { status: state }, mudou });
    else t.match(response.json(), { error: 'conflict', status: state });
  };
  await expect('retomar', 200, 'ativo', false);
  await expect('pausar', 200, 'pausado', true);
  await expect('pausar', 200, 'pausado', false);
  await expect('retomar', 200, 'ativo', true);
  await query(
    h.url,
    `UPDATE checkout_recorrencias SET status = 'hold', motivo_hold = 'teste', hold_em = now() WHERE id = $1`,
    [id],
  );
  await expect('pausar', 409, 'hold');
  await expect('retomar', 409, 'hold');
  await expect('cancelar', 200, 'cancelado', true);
  const [ended] = await query<{ encerrada: boolean }>(
    h.url,
    'SELECT encerrada_em IS NOT NULL AS encerrada FROM checkout_recorrencias WHERE id = $1',
    [id],
  );
  t.equal(ended?.encerrada, true, 'cancelling starts the archive clock');
  await expect('retomar', 409, 'cancelado');
  await expect('pausar', 409, 'cancelado');
  await expect('cancelar', 200, 'cancelado', false);
  t.equal(
    (await h.app.inject({ method: 'POST', url: `/recorrencias/${id}/reativar`, headers: operator }))
      .statusCode,
    409,
  );
  const done = await insertRecurrence(h.pool, {
    proxima_cobranca: '2031-04-10',
    status: 'concluido',
    encerrada_em: new Date(),
  });
  for (const action of ['pausar', 'retomar', 'cancelar']) {
    const response = await h.app.inject({
      method: 'POST',
      url: `/recorrencias/${done}/${action}`,
      headers: checkout,
    });
    t.equal(response.statusCode, 409, `${action} a concluded recurrence`);
    t.match(response.json(), { status: 'concluido' });
  }
  t.equal(
    (await h.app.inject({ method: 'POST', url: '/recorrencias/999999/pausar', headers: checkout }))
      .statusCode,
    404,
  );
  const history = await query<{ campo: string; valor_anterior: string; valor_novo: string; quem: string }>(
    h.url,
    'SELECT campo, valor_anterior, valor_novo, quem FROM checkout_recorrencias_alteracoes WHERE recorrencia_id = $1 ORDER BY id',
    [id],
  );
  t.same(
    history.map((row) => `${row.campo}:${row.valor_anterior}->${row.valor_novo}:${row.quem}`),
    ['status:ativo->pausado:checkout', 'status:pausado->ativo:checkout', 'status:hold->cancelado:checkout'],
  );
  const audit = await query<{ acao: string }>(
    h.url,
    `SELECT acao FROM auditoria_admin WHERE alvo = $1 ORDER BY id`,
    [`recorrencia:${id}`],
  );
  t.same(
    audit.map((row) => row.acao),
    ['create_recurrence', 'pausar_recurrence', 'retomar_recurrence', 'cancelar_recurrence'],
  );
});

t.test('resuming after the cycle passed skips the paused cycles (recorded), not charging them', async (t) => {
  const h = await harness(t);
  const id = await insertRecurrence(h.pool, { proxima_cobranca: '2031-01-15', status: 'pausado' });
  const response = await h.app.inject({
    method: 'POST',
    url: `/recorrencias/${id}/retomar`,
    headers: checkout,
  });
  t.match(response.json(), { recorrencia: { status: 'ativo', proxima_cobranca: '2031-03-15' } });
  t.same(
    (await skippedCyclesOf(h.url, id)).map((row) => row.ciclo),
    ['2031-01-15', '2031-02-15'],
  );
});

t.test('a cycle declined before the pause keeps its retry through pausar and retomar', async (t) => {
  const h = await harness(t);
  // Declined twice before the pause (today, 2031-03-01), its retry planned for 03-03.
  const id = await insertRecurrence(h.pool, {
    proxima_cobranca: '2031-02-25',
    proxima_tentativa: '2031-03-03',
    falhas_consecutivas: 2,
  });
  const transition = (action: string) =>
    h.app.inject({ method: 'POST', url: `/recorrencias/${id}/${action}`, headers: checkout });
  t.equal((await transition('pausar')).statusCode, 200);
  // Resumed a month later: the retry's date and the cycle of 03-25 passed during the pause.
  h.setNow(new Date('2031-04-02T15:00:00Z'));
  t.equal((await transition('retomar')).statusCode, 200);
  t.match(await recurrenceRow(h, id), {
    status: 'ativo',
    proxima_cobranca: '2031-02-25',
    proxima_tentativa: '2031-03-03',
    falhas_consecutivas: 2,
  });
  t.same(await skippedCyclesOf(h.url, id), [], 'the declined cycle is not recorded as skipped');

  // The next retry run charges it; its approval moves the next cycle past the pause (03-25: skipped).
  t.match(await chargeOnce(h, id, '2031-04-02', 'retentativa'), {
    result: { status: 'approved', cycle: '2031-02-25' },
  });
  t.match(await recurrenceRow(h, id), {
    proxima_cobranca: '2031-04-25',
    proxima_tentativa: null,
    falhas_consecutivas: 0,
  });
  t.same(
    (await skippedCyclesOf(h.url, id)).map((row) => row.ciclo),
    ['2031-03-25'],
  );
});

t.test('PATCH: a change of anchor does not shorten the time a charged cycle paid for', async (t) => {
  const h = await harness(t);
  const id = (await create(h, { ...NEW, dia_ancora: 31, proxima_cobranca: '2031-05-31' })).json<Body>()
    .recorrencia.id;
  const patch = (payload: object) =>
    h.app.inject({ method: 'PATCH', url: `/recorrencias/${id}`, headers: checkout, payload });
  // Cycle 2031-05-31 charged under anchor 31: paid up to 2031-06-30.
  await query(
    h.url,
    `INSERT INTO checkout_recorrencia_cobrancas (recorrencia_id, ciclo, tentativa, chave_idempotencia, status, valor_centavos,
     moeda, cartao_token, data_negocio, resolvida_em) VALUES ($1, '2031-05-31', 1, 'k-may', 'aprovada', 4990, 'BRL', 't', '2031-05-31', now())`,
    [id],
  );
  await query(h.url, `UPDATE checkout_recorrencias SET proxima_cobranca = '2031-06-30' WHERE id = $1`, [id]);
  t.match(
    (await patch({ dia_ancora: 1 })).json(),
    { recorrencia: { dia_ancora: 1, proxima_cobranca: '2031-07-01' } },
    'the first anchor-1 date after the paid time',
  );
  // Under anchor 1 the cycle's next one would be 06-01; it was charged under 31, so June stays paid.
  const inPaidTime = await patch({ dia_ancora: 10, proxima_cobranca: '2031-06-10' });
  t.equal(inPaidTime.statusCode, 409, inPaidTime.body);
  t.match(inPaidTime.json(), { message: /before 2031-06-30, up to which cycle 2031-05-31 is paid/ });
  t.match(
    (await patch({ dia_ancora: 10 })).json(),
    { recorrencia: { dia_ancora: 10, proxima_cobranca: '2031-07-10' } },
    'only the anchor again: still after the paid time',
  );
  t.equal(
    (await patch({ dia_ancora: 30, proxima_cobranca: '2031-06-30' })).statusCode,
    200,
    'its end is fine',
  );
});

t.test(
  'PATCH: amount, card, description and schedule, with the rules that prevent a double charge',
  async (t) => {
    const h = await harness(t);
    const id = (await create(h, { ...NEW, dia_ancora: 10, proxima_cobranca: '2031-03-10' })).json<Body>()
      .recorrencia.id;
    const patch = (payload: object, headers = checkout) =>
      h.app.inject({ method: 'PATCH', url: `/recorrencias/${id}`, headers, payload });

    const changed = await patch({
      valor_centavos: 5990,
      cartao_token: 'tok_aprova_novo_cartao',
      bandeira: 'elo',
      descricao: 'Plano novo',
    });
    t.equal(changed.statusCode, 200, changed.body);
    t.match(changed.json(), {
      recorrencia: { valor_centavos: 5990, bandeira: 'elo', descricao: 'Plano novo' },
      aplica_a_partir_do_ciclo: '2031-03-10',
      cobranca_em_andamento: null,
    });
    t.same(
      (await patch({ valor_centavos: 5990 })).json<{ alteracoes: unknown[] }>().alteracoes,
      [],
      'no change, no history',
    );
    t.match((await patch({ cartao_token: 'tok_x_1234567890' })).json(), { message: /change together/ });
    t.equal((await patch({})).statusCode, 400, 'nothing to change');
    t.equal((await patch({ status: 'cancelado' })).statusCode, 400, 'status is not patched');

    const anchor = await patch({ dia_ancora: 5 });
    t.match(
      anchor.json(),
      { recorrencia: { dia_ancora: 5, proxima_cobranca: '2031-03-05' } },
      'the date follows the anchor in its month',
    );
    t.match((await patch({ proxima_cobranca: '2031-04-06' })).json(), { message: /anchor day 5/ });
    t.match((await patch({ dia_ancora: 28, proxima_cobranca: '2031-02-28' })).json(), {
      message: /before today/,
    });
    t.equal((await patch({ dia_ancora: 5, proxima_cobranca: '2031-04-05' })).statusCode, 200);

    // A cycle charged here: the schedule may not make it (or anything before it) due again.
    await query(
      h.url,
      `INSERT INTO checkout_recorrencia_cobrancas (recorrencia_id, ciclo, tentativa, chave_idempotencia, status, valor_centavos,
       moeda, cartao_token, data_negocio, resolvida_em) VALUES ($1, '2031-04-05', 1, 'k-approved', 'aprovada', 5990, 'BRL', 't', '2031-04-05', now())`,
      [id],
    );
    await query(h.url, `UPDATE checkout_recorrencias SET proxima_cobranca = '2031-05-05' WHERE id = $1`, [
      id,
    ]);
    const twice = await patch({ proxima_cobranca: '2031-04-05' });
    t.equal(twice.statusCode, 409);
    t.match(twice.json(), { message: /already charged/, status: 'ativo' });
    t.equal(
      (await patch({ dia_ancora: 1, proxima_cobranca: '2031-04-01' })).statusCode,
      409,
      'before the charged cycle too',
    );
    t.equal((await patch({ dia_ancora: 6 })).statusCode, 200, 'after it is fine');
    // Cycle 04-05 (anchor 5, then) paid for the time up to 05-06 with anchor 6: no date before it.
    t.match((await patch({ dia_ancora: 1, proxima_cobranca: '2031-05-01' })).json(), {
      error: 'conflict',
      message: /before 2031-05-06, up to which cycle 2031-04-05 is paid/,
    });
    t.match(
      (await patch({ dia_ancora: 1 })).json(),
      { recorrencia: { dia_ancora: 1, proxima_cobranca: '2031-06-01' } },
      'only the anchor: the first date on it after the paid time',
    );
    // A postponement can be undone: the paid time ends at the approved cycle's next one, not at the current date.
    t.equal((await patch({ proxima_cobranca: '2031-09-01' })).statusCode, 200);
    t.match((await patch({ proxima_cobranca: '2031-08-01' })).json(), {
      recorrencia: { proxima_cobranca: '2031-08-01' },
    });

    await query(h.url, `UPDATE checkout_recorrencias SET proxima_tentativa = '2031-05-09' WHERE id = $1`, [
      id,
    ]);
    t.match((await patch({ proxima_cobranca: '2031-07-01' })).json(), {
      error: 'conflict',
      message: /retried on 2031-05-09/,
    });
    t.equal((await patch({ valor_centavos: 100 })).statusCode, 200, 'the amount may change during a retry');
    await query(h.url, `UPDATE checkout_recorrencias SET proxima_tentativa = NULL WHERE id = $1`, [id]);

    t.equal((await patch({ valor_centavos: 1 }, reader)).statusCode, 403, 'a read token cannot change');
    await h.app.inject({ method: 'POST', url: `/recorrencias/${id}/cancelar`, headers: checkout });
    t.match((await patch({ valor_centavos: 7 })).json(), { error: 'conflict', status: 'cancelado' });
    t.equal(
      (
        await h.app.inject({
          method: 'PATCH',
          url: '/recorrencias/999999',
          headers: checkout,
          payload: { valor_centavos: 7 },
        })
      ).statusCode,
      404,
    );

    const detail = (await h.app.inject({ url: `/recorrencias/${id}`, headers: reader })).json<{
      alteracoes: Array<{ campo: string; valor_anterior: string; valor_novo: string }>;
    }>();
    t.match(detail.alteracoes.slice(0, 4), [
      { campo: 'valor_centavos', valor_anterior: '4990', valor_novo: '5990' },
      { campo: 'cartao_token', valor_anterior: 'tok_…f123', valor_novo: 'tok_…rtao' },
      { campo: 'bandeira', valor_anterior: 'visa', valor_novo: 'elo' },
      { campo: 'descricao' },
    ]);
    t.ok(
      detail.alteracoes.every((row) => !String(row.valor_novo).includes('novo_cartao')),
      'tokens stay masked in the history',
    );
  },
);

t.test(
  'scopes: checkout manages recurrences but not tasks; read only reads; operator does both',
  async (t) => {
    const h = await harness(t);
    const id = (await create(h, NEW, operator)).json<Body>().recorrencia.id;
    const calls: Array<{ method: 'GET' | 'POST' | 'PATCH'; url: string; payload?: object }> = [
      { method: 'POST', url: '/recorrencias', payload: { ...NEW, referencia_externa: 'x' } },
      { method: 'GET', url: '/recorrencias' },
      { method: 'GET', url: `/recorrencias/${id}` },
      { method: 'PATCH', url: `/recorrencias/${id}`, payload: { descricao: 'x' } },
      { method: 'POST', url: `/recorrencias/${id}/pausar` },
      { method: 'POST', url: `/recorrencias/${id}/retomar` },
    ];
    for (const call of calls) {
      const viaCheckout = await h.app.inject({
        ...call,
        headers: { ...checkout, 'idempotency-key': randomUUID() },
      });
      t.ok(viaCheckout.statusCode < 300, `checkout: ${call.method} ${call.url} -> ${viaCheckout.statusCode}`);
      const viaReader = await h.app.inject({ ...call, headers: reader });
      t.equal(viaReader.statusCode, call.method === 'GET' ? 200 : 403, `read: ${call.method} ${call.url}`);
      const viaOperator = await h.app.inject({ ...call, headers: operator });
      t.ok(viaOperator.statusCode < 300, `operator: ${call.method} ${call.url}`);
      t.equal((await h.app.inject({ ...call })).statusCode, 401, 'no token');
    }
    for (const url of [
      '/tasks/processar_recorrencias_do_dia/run',
      '/tasks/processar_recorrencias_do_dia/pause',
      `/recorrencias/${id}/reativar`,
    ]) {
      t.equal(
        (await h.app.inject({ method: 'POST', url, headers: checkout })).statusCode,
        403,
        `checkout may not ${url}`,
      );
    }
    t.equal(
      (await h.app.inject({ method: 'POST', url: `/recorrencias/${id}/cancelar`, headers: reader }))
        .statusCode,
      403,
    );
    t.equal(
      (await h.app.inject({ method: 'POST', url: `/recorrencias/${id}/cancelar`, headers: checkout }))
        .statusCode,
      200,
    );
  },
);

t.test('OpenAPI documents the lifecycle routes', async (t) => {
  const h = await harness(t);
  const spec = (await h.app.inject({ url: '/docs/json' })).json<{
    paths: Record<string, Record<string, unknown>>;
  }>();
  t.ok(spec.paths['/recorrencias']?.post && spec.paths['/recorrencias'].get);
  t.ok(spec.paths['/recorrencias/{id}']?.patch);
  for (const action of ['pausar', 'retomar', 'cancelar'])
    t.ok(spec.paths[`/recorrencias/{id}/${action}`]?.post, action);
});
