// The checkout integration with the charge protocol: signed events emitted once per outcome from inside
// phase 3, changes and cancellations made through the API while a charge is in flight, and two OS processes
// racing to create with the same Idempotency-Key.
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { verifySignature } from '../../src/notices/webhook.ts';
import { CHECKOUT_EVENT_QUEUE } from '../../src/queue/task-names.ts';
import { registerCheckoutEventWorker } from '../../src/tasks/notices/notice-worker.ts';
import { CHECKOUT_TOKEN, OPERATOR_TOKEN, auth, createAdminHarness } from '../helpers/admin.ts';
import { query } from '../helpers/database.ts';
import {
  assertLedgerAgrees,
  attemptsOf,
  chargeOnce,
  createHarness,
  insertRecurrence,
  recurrenceState,
  type Harness,
} from '../helpers/harness.ts';
import { eventually } from '../helpers/processes.ts';
import { webhookReceiver } from '../helpers/webhook-receiver.ts';

const DAY = '2031-03-10';
const SECRET = 'checkout-secret-0123456789';
const checkout = auth(CHECKOUT_TOKEN);

const charge = async (h: Harness, id: number, date = DAY) => (await chargeOnce(h, id, date)).result;

type Event = {
  evento_id: string;
  evento: string;
  recorrencia: { id: number; status: string; proxima_cobranca: string };
  cobranca: { id: number; status: string; valor_centavos: number; codigo_recusa: string | null } | null;
};

t.test('charge outcomes reach the checkout once each, signed, with an event id to dedupe on', async (t) => {
  const receiver = await webhookReceiver(t, 1, '/eventos');
  const h = await createHarness(t, {
    env: { CHECKOUT_WEBHOOK_URL: receiver.url, CHECKOUT_WEBHOOK_SECRET: SECRET },
  });
  const last = await insertRecurrence(h.pool, {
    proxima_cobranca: DAY,
    total_ciclos: 1,
    valor_centavos: 1500,
  });
  const hard = await insertRecurrence(h.pool, {
    proxima_cobranca: DAY,
    cartao_token: 'tok_recusa_irreversivel_1',
  });
  const soft = await insertRecurrence(h.pool, {
    proxima_cobranca: DAY,
    cartao_token: 'tok_recusa_reversivel_1',
  });
  t.match(await charge(h, last), { status: 'approved' });
  t.match(await charge(h, hard), { status: 'declined', decision: 'hold' });
  t.match(await charge(h, soft), { status: 'declined', decision: 'retry' });
  const rows = await query<{ id: number; tipo: string; recorrencia_id: number; status: string }>(
    h.url,
    'SELECT id::int, tipo, recorrencia_id::int, status FROM eventos_checkout ORDER BY id',
  );
  t.same(
    rows.map((row) => `${row.recorrencia_id}:${row.tipo}:${row.status}`),
    [
      `${last}:cobranca_aprovada:pendente`,
      `${last}:recorrencia_concluida:pendente`,
      `${hard}:cobranca_recusada:pendente`,
      `${hard}:recorrencia_em_hold:pendente`,
      `${soft}:cobranca_recusada:pendente`,
    ],
    'one event per outcome, committed with it',
  );
  const [jobs] = await query<{ n: number }>(
    h.url,
    'SELECT count(*)::int AS n FROM pgboss.job WHERE name = $1',
    [CHECKOUT_EVENT_QUEUE],
  );
  t.equal(jobs?.n, 5, 'and one delivery job each');

  await registerCheckoutEventWorker(h.boss, h.deps);
  // The receiver refused the first delivery: it is recorded on the event and retried with backoff.
  await eventually(async () => (receiver.calls() >= 1 ? true : undefined));
  const failed = await eventually(async () => {
    const [row] = await query<{ tentativas: number; ultimo_erro: string }>(
      h.url,
      `SELECT tentativas, ultimo_erro FROM eventos_checkout WHERE ultimo_erro IS NOT NULL`,
    );
    return row;
  });
  t.match(failed, { tentativas: 1, ultimo_erro: /HTTP 503/ });
  await query(h.url, `UPDATE pgboss.job SET start_after = now() WHERE name = $1 AND state = 'retry'`, [
    CHECKOUT_EVENT_QUEUE,
  ]);
  await eventually(async () => (receiver.received.length >= 5 ? true : undefined), 60_000);

  const ids = receiver.received.map((delivery) => String(delivery.headers['x-recorrencias-evento-id']));
  t.equal(new Set(ids).size, 5, 'five distinct event ids');
  t.same(new Set(ids), new Set(rows.map((row) => `evento-${row.id}`)));
  const now = Math.floor(Date.now() / 1000);
  for (const delivery of receiver.received) {
    t.ok(
      verifySignature(SECRET, String(delivery.headers['x-recorrencias-assinatura']), delivery.body, now),
      'signed',
    );
    const event = JSON.parse(delivery.body) as Event;
    t.equal(event.evento_id, delivery.headers['x-recorrencias-evento-id'], 'the body carries its own id');
    t.equal(event.evento, delivery.headers['x-recorrencias-evento']);
  }
  const byType = new Map(
    receiver.received
      .map((delivery) => JSON.parse(delivery.body) as Event)
      .map((event) => [`${event.recorrencia.id}:${event.evento}`, event]),
  );
  t.match(byType.get(`${last}:cobranca_aprovada`), {
    recorrencia: { status: 'concluido' },
    cobranca: { status: 'aprovada', valor_centavos: 1500 },
  });
  t.match(byType.get(`${hard}:recorrencia_em_hold`), {
    recorrencia: { status: 'hold' },
    cobranca: { status: 'recusada', codigo_recusa: '14' },
  });
  t.match(byType.get(`${soft}:cobranca_recusada`), {
    recorrencia: { status: 'ativo' },
    cobranca: { codigo_recusa: '51' },
  });
  await eventually(async () => {
    const sent = await query(h.url, `SELECT 1 FROM eventos_checkout WHERE status = 'enviado'`);
    return sent.length === 5 ? true : undefined;
  });
  const detail = await query<{ tentativas: number }>(
    h.url,
    'SELECT tentativas FROM eventos_checkout ORDER BY id',
  );
  t.ok(
    detail.every((row) => row.tentativas >= 1),
    'attempts are visible',
  );
});

t.test('without CHECKOUT_WEBHOOK_URL events are recorded, not sent', async (t) => {
  const h = await createHarness(t);
  const id = await insertRecurrence(h.pool, { proxima_cobranca: DAY });
  t.match(await charge(h, id), { status: 'approved' });
  t.same(await query(h.url, 'SELECT tipo, status FROM eventos_checkout'), [
    { tipo: 'cobranca_aprovada', status: 'registrado' },
  ]);
  t.same(await query(h.url, 'SELECT 1 FROM pgboss.job WHERE name = $1', [CHECKOUT_EVENT_QUEUE]), []);
});

t.test('an event left pending with no job behind it is delivered again on request', async (t) => {
  const receiver = await webhookReceiver(t, 0, '/eventos');
  const h = await createAdminHarness(t, {
    CHECKOUT_WEBHOOK_URL: receiver.url,
    CHECKOUT_WEBHOOK_SECRET: SECRET,
  });
  const id = await insertRecurrence(h.pool, { proxima_cobranca: DAY });
  t.match(await charge(h, id), { status: 'approved' });
  // Its worker died on the last attempt (pg-boss failed the job without the handler recording it), and the
  // job is gone since (past the job retention): the row is still pendente, with nothing behind it.
  await query(h.url, 'DELETE FROM pgboss.job WHERE name = $1', [CHECKOUT_EVENT_QUEUE]);
  const [event] = await query<{ id: string }>(h.url, 'SELECT id FROM eventos_checkout');
  const operator = auth(OPERATOR_TOKEN);
  const resend = (eventId: string) =>
    h.app.inject({ method: 'POST', url: `/eventos-checkout/${eventId}/reenviar`, headers: operator });
  const first = await resend(String(event?.id));
  t.equal(first.statusCode, 200, first.body);
  t.same(await query(h.url, 'SELECT status FROM eventos_checkout'), [{ status: 'pendente' }]);
  const again = await resend(String(event?.id));
  t.equal(again.statusCode, 409, 'pending: its new job is on it');
  t.match(again.json(), { status: 'pendente' });
  t.equal((await resend('999999')).statusCode, 404);
  t.equal(
    (
      await h.app.inject({
        method: 'POST',
        url: `/eventos-checkout/${String(event?.id)}/reenviar`,
        headers: auth(CHECKOUT_TOKEN),
      })
    ).statusCode,
    403,
    'an operator action',
  );

  await registerCheckoutEventWorker(h.boss, h.deps);
  await eventually(async () => (receiver.received.length >= 1 ? true : undefined));
  t.equal(receiver.received[0]?.headers['x-recorrencias-evento-id'], `evento-${String(event?.id)}`);
  await eventually(async () => {
    const [row] = await query<{ status: string }>(h.url, 'SELECT status FROM eventos_checkout');
    return row?.status === 'enviado' ? true : undefined;
  });
  t.equal((await resend(String(event?.id))).statusCode, 409, 'delivered: nothing to send again');
});

t.test('a rejected request puts the recurrence on hold with an event', async (t) => {
  const h = await createHarness(t);
  // The gateway refuses card tokens over 512 characters: 400 invalid_request.
  const id = await insertRecurrence(h.pool, {
    proxima_cobranca: DAY,
    cartao_token: `tok_${'x'.repeat(600)}`,
  });
  t.match(await charge(h, id), { status: 'rejected' });
  t.same(await query(h.url, 'SELECT tipo FROM eventos_checkout WHERE recorrencia_id = $1', [id]), [
    { tipo: 'recorrencia_em_hold' },
  ]);
});

t.test(
  'changes during a charge in flight: the charge keeps its amount and card, the schedule is refused',
  async (t) => {
    const h = await createAdminHarness(t);
    h.setNow(new Date(`${DAY}T12:00:00Z`));
    const id = await insertRecurrence(h.pool, { proxima_cobranca: DAY, valor_centavos: 1000 });
    h.gateway.setFaults({ rules: [{ nth: 1, fault: 'hold' }] });
    const charging = charge(h, id);
    await h.gateway.waitForHeld(1);
    const patch = (payload: object) =>
      h.app.inject({ method: 'PATCH', url: `/recorrencias/${id}`, headers: checkout, payload });
    const amount = await patch({ valor_centavos: 2000, cartao_token: 'tok_aprova_novo', bandeira: 'visa' });
    t.equal(amount.statusCode, 200, amount.body);
    t.match(amount.json(), {
      aplica_a_partir_do_ciclo: '2031-04-10',
      cobranca_em_andamento: { ciclo: DAY, valor_centavos: 1000 },
    });
    const date = await patch({ proxima_cobranca: '2031-03-20', dia_ancora: 20 });
    t.equal(date.statusCode, 409);
    t.match(date.json(), { error: 'conflict', message: /in flight/ });
    t.equal((await patch({ dia_ancora: 15 })).statusCode, 409, 'an anchor change too');
    h.gateway.release();
    t.match(
      await charging,
      { status: 'approved', amountCents: 1000 },
      'the charge in flight kept its amount',
    );
    t.match(
      await charge(h, id, '2031-04-10'),
      { status: 'approved', amountCents: 2000 },
      'the next cycle has the new one',
    );
    t.same(
      (await attemptsOf(h.url, id)).map((a) => `${a.ciclo}:${a.valor_centavos}`),
      [`${DAY}:1000`, '2031-04-10:2000'],
    );
    await assertLedgerAgrees(t, h.url, h.gateway);
    t.same(
      await query(
        h.url,
        'SELECT cartao_token FROM checkout_recorrencia_cobrancas WHERE recorrencia_id = $1 ORDER BY ciclo',
        [id],
      ),
      [{ cartao_token: 'tok_aprova_1' }, { cartao_token: 'tok_aprova_novo' }],
      'and so did its card',
    );
  },
);

t.test(
  'cancelled through the API while its charge is in flight: the charge finishes, the next is not made',
  async (t) => {
    const h = await createAdminHarness(t);
    h.setNow(new Date(`${DAY}T12:00:00Z`));
    const id = await insertRecurrence(h.pool, { proxima_cobranca: DAY });
    h.gateway.setFaults({ rules: [{ nth: 1, fault: 'hold' }] });
    const charging = charge(h, id);
    await h.gateway.waitForHeld(1);
    const cancel = await h.app.inject({
      method: 'POST',
      url: `/recorrencias/${id}/cancelar`,
      headers: checkout,
    });
    t.equal(cancel.statusCode, 200);
    t.match(cancel.json(), { recorrencia: { status: 'cancelado' }, cobranca_em_andamento: { ciclo: DAY } });
    h.gateway.release();
    t.match(await charging, { status: 'approved' }, 'the money moved: the approval is recorded');
    t.match(await recurrenceState(h.url, id), { status: 'cancelado', proxima_cobranca: '2031-04-10' });
    t.match(await charge(h, id, '2031-04-10'), { status: 'skipped', reason: 'recurrence_cancelado' });
    t.equal(h.gateway.ledger().length, 1, 'one charge at the gateway');
    await assertLedgerAgrees(t, h.url, h.gateway);
  },
);

t.test(
  'every change through the API has its event: a decline delivered late is older than the cancel after it',
  async (t) => {
    const h = await createAdminHarness(t);
    const id = await insertRecurrence(h.pool, {
      proxima_cobranca: DAY,
      cartao_token: 'tok_recusa_reversivel_1',
    });
    t.match(await charge(h, id), { status: 'declined', decision: 'retry' });
    const call = (path: string, headers: Record<string, string>, payload?: object) =>
      h.app.inject({
        method: path === '' ? 'PATCH' : 'POST',
        url: `/recorrencias/${id}${path}`,
        headers,
        ...(payload === undefined ? {} : { payload }),
      });
    t.equal((await call('', checkout, { valor_centavos: 2500 })).statusCode, 200);
    t.equal((await call('/pausar', checkout)).statusCode, 200);
    t.equal((await call('/pausar', checkout)).statusCode, 200, 'a repeated call changes nothing');
    t.equal((await call('/retomar', checkout)).statusCode, 200);
    t.equal((await call('/reativar', auth(OPERATOR_TOKEN))).statusCode, 409, 'refused: not on hold');
    t.equal((await call('/cancelar', checkout)).statusCode, 200);
    const events = await query<{ tipo: string; status: string; cobranca: unknown }>(
      h.url,
      `SELECT tipo, conteudo->'recorrencia'->>'status' AS status, conteudo->'cobranca' AS cobranca
       FROM eventos_checkout WHERE recorrencia_id = $1 ORDER BY id`,
      [id],
    );
    t.same(
      events.map((event) => `${event.tipo}:${event.status}`),
      [
        'cobranca_recusada:ativo',
        'recorrencia_alterada:ativo',
        'recorrencia_alterada:pausado',
        'recorrencia_alterada:ativo',
        'recorrencia_alterada:cancelado',
      ],
      'one event per change that happened, in order, each with the recurrence as it left it',
    );
    t.equal(events.at(-1)?.cobranca, null, 'a change carries no attempt');

    const held = await insertRecurrence(h.pool, { proxima_cobranca: DAY, status: 'hold' });
    const reactivated = await h.app.inject({
      method: 'POST',
      url: `/recorrencias/${held}/reativar`,
      headers: auth(OPERATOR_TOKEN),
    });
    t.equal(reactivated.statusCode, 200);
    t.same(
      await query(
        h.url,
        `SELECT tipo, conteudo->'recorrencia'->>'status' AS status FROM eventos_checkout WHERE recorrencia_id = $1`,
        [held],
      ),
      [{ tipo: 'recorrencia_alterada', status: 'ativo' }],
      "an operator's reativar reaches the checkout too",
    );
  },
);

t.test('two OS processes racing with the same Idempotency-Key create one recurrence', async (t) => {
  const h = await createAdminHarness(t);
  await h.app.listen({ port: 0, host: '127.0.0.1' });
  const address = h.app.server.address();
  if (address === null || typeof address === 'string') throw new Error('not listening');
  const dir = await mkdtemp(join(tmpdir(), 'barrier-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const barrier = join(dir, 'go');
  const body = JSON.stringify({
    vendedor_id: 'loja-1',
    cartao_token: 'tok_aprova_corrida',
    bandeira: 'visa',
    valor_centavos: 990,
    periodicidade: 'semanal',
    proxima_cobranca: '2031-06-02',
  });
  const script = `const r = await fetch(process.argv[1], { method: 'POST', body: process.argv[2], headers: {
    'content-type': 'application/json', authorization: 'Bearer ${CHECKOUT_TOKEN}', 'idempotency-key': 'corrida-1' } });
    process.stdout.write(JSON.stringify({ status: r.status, body: await r.text() }));`;
  const url = `http://127.0.0.1:${address.port}/recorrencias`;
  const runOne = () =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const child = spawn(
        'sh',
        [
          '-c',
          `while [ ! -e "${barrier}" ]; do sleep 0.005; done; exec "$0" --input-type=module -e "$1" "$2" "$3"`,
          process.execPath,
          script,
          url,
          body,
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let out = '';
      child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (out += chunk.toString()));
      child.on('exit', (code) => {
        try {
          resolve(JSON.parse(out) as { status: number; body: string });
        } catch {
          reject(new Error(`child exited ${code}: ${out}`));
        }
      });
    });
  const racers = [runOne(), runOne()];
  await writeFile(barrier, 'go');
  const [a, b] = await Promise.all(racers);
  t.same([a?.status, b?.status], [201, 201], 'both answered as created');
  t.equal(a?.body, b?.body, 'with the same body');
  t.same(
    await query(h.url, 'SELECT count(*)::int AS n FROM checkout_recorrencias'),
    [{ n: 1 }],
    'one recurrence',
  );
  t.same(await query(h.url, 'SELECT count(*)::int AS n FROM chaves_idempotencia'), [{ n: 1 }]);
});
