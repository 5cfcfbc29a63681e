// The fake gateway's side of the HTTP contract, spoken to with plain fetch (the client is tested elsewhere).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import {
  startFakeGateway,
  type FakeGateway,
  type FakeGatewayOptions,
} from '../../src/gateway/fake-gateway.ts';

type Sent = { status: number; body: Record<string, unknown>; replayed: boolean };

function chargeBody(overrides: Record<string, unknown> = {}) {
  return {
    amount_cents: 4_990,
    currency: 'BRL',
    card_token: 'tok_aprova_1',
    description: 'Plano mensal',
    metadata: { recorrencia_id: '42', ciclo: '2025-03-10', tentativa: 1 },
    ...overrides,
  };
}

async function post(
  url: string,
  key: string | undefined,
  body: unknown,
  headers: Record<string, string> = {},
) {
  const response = await fetch(`${url}/v1/charges`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      ...(key === undefined ? {} : { 'idempotency-key': key }),
      ...headers,
    },
    body: JSON.stringify(body),
  });
  return {
    status: response.status,
    body: (await response.json()) as Record<string, unknown>,
    replayed: response.headers.get('idempotent-replayed') === 'true',
  } satisfies Sent;
}

async function get(url: string, path: string, headers: Record<string, string> = {}) {
  const response = await fetch(`${url}${path}`, { headers });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

async function control(url: string, method: string, path: string, body?: unknown) {
  const response = await fetch(`${url}${path}`, {
    method,
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

async function started(t: Test, options: FakeGatewayOptions = {}): Promise<FakeGateway> {
  const fake = await startFakeGateway(options);
  t.teardown(() => fake.close());
  return fake;
}

t.test('outcomes by card token prefix', async (t) => {
  const fake = await started(t);
  const approved = await post(fake.url, 'k-aprova', chargeBody({ card_token: 'tok_aprova_x' }));
  t.equal(approved.status, 200);
  t.match(approved.body, {
    status: 'approved',
    charge_id: /^ch_/,
    amount_cents: 4_990,
    currency: 'BRL',
    idempotency_key: 'k-aprova',
  });
  const reversible = await post(fake.url, 'k-rev', chargeBody({ card_token: 'tok_recusa_reversivel_9' }));
  t.match(reversible.body, { status: 'declined', code: '51', reversible: true, idempotency_key: 'k-rev' });
  const irreversible = await post(fake.url, 'k-irr', chargeBody({ card_token: 'tok_recusa_irreversivel' }));
  t.match(irreversible.body, { status: 'declined', code: '14', reversible: false });
  t.same(
    fake.ledger().map((entry) => [entry.seq, entry.key, entry.status, entry.code]),
    [
      [1, 'k-aprova', 'approved', undefined],
      [2, 'k-rev', 'declined', '51'],
      [3, 'k-irr', 'declined', '14'],
    ],
  );
});

t.test('a repeated key with the same parameters replays the first response', async (t) => {
  const fake = await started(t);
  const first = await post(fake.url, 'k-1', chargeBody());
  // tentativa and description are not part of what must match.
  const again = await post(
    fake.url,
    'k-1',
    chargeBody({
      description: 'outra',
      metadata: { recorrencia_id: '42', ciclo: '2025-03-10', tentativa: 2 },
    }),
  );
  t.equal(first.replayed, false);
  t.equal(again.replayed, true);
  t.equal(again.status, first.status);
  t.same(again.body, first.body);
  t.equal(fake.ledger().length, 1);
  t.match(fake.stats(), { charges_executed: 1, replays: 1, charge_requests: 2 });
});

t.test('a repeated key with different parameters is refused with 409', async (t) => {
  const fake = await started(t);
  await post(fake.url, 'k-1', chargeBody());
  for (const changed of [
    { amount_cents: 5_000 },
    { currency: 'USD' },
    { card_token: 'tok_aprova_2' },
    { metadata: { recorrencia_id: '43', ciclo: '2025-03-10', tentativa: 1 } },
    { metadata: { recorrencia_id: '42', ciclo: '2025-04-10', tentativa: 1 } },
  ]) {
    const reused = await post(fake.url, 'k-1', chargeBody(changed));
    t.equal(reused.status, 409, JSON.stringify(changed));
    t.equal(reused.body.error, 'idempotency_key_reused');
  }
  t.equal(fake.ledger().length, 1);
});

t.test('lookup returns the stored response or not_found', async (t) => {
  const fake = await started(t);
  const charged = await post(fake.url, 'k/with?odd#chars', chargeBody());
  const found = await get(fake.url, `/v1/charges/${encodeURIComponent('k/with?odd#chars')}`);
  t.equal(found.status, 200);
  t.same(found.body, charged.body);
  const missing = await get(fake.url, '/v1/charges/never-sent');
  t.same(missing, { status: 404, body: { error: 'not_found' } });
  t.equal(fake.stats().lookups, 2);
});

t.test('invalid requests get 400 and execute nothing', async (t) => {
  const fake = await started(t);
  const cases: Array<[string, string | undefined, unknown]> = [
    ['no key', undefined, chargeBody()],
    ['key too long', 'k'.repeat(256), chargeBody()],
    ['zero amount', 'k-a', chargeBody({ amount_cents: 0 })],
    ['fractional amount', 'k-b', chargeBody({ amount_cents: 10.5 })],
    ['lower-case currency', 'k-c', chargeBody({ currency: 'brl' })],
    ['no card token', 'k-d', chargeBody({ card_token: '' })],
    [
      'bad ciclo',
      'k-e',
      chargeBody({ metadata: { recorrencia_id: '1', ciclo: '2025-02-30', tentativa: 1 } }),
    ],
    [
      'numeric extra metadata',
      'k-f',
      chargeBody({ metadata: { recorrencia_id: '1', ciclo: '2025-02-03', tentativa: 1, x: 1 } }),
    ],
  ];
  for (const [name, key, body] of cases) {
    const sent = await post(fake.url, key, body);
    t.equal(sent.status, 400, name);
    t.equal(sent.body.error, 'invalid_request', name);
  }
  const notJson = await fetch(`${fake.url}/v1/charges`, {
    method: 'POST',
    headers: { 'content-type': 'text/plain', 'idempotency-key': 'k-g' },
    body: 'amount=1',
  });
  t.equal(notJson.status, 400);
  t.equal(fake.ledger().length, 0);
  t.equal(fake.stats().rejected, cases.length + 1);
});

t.test('an api key is required on /v1 when configured, never on the control endpoints', async (t) => {
  const fake = await started(t, { apiKey: 'segredo-de-teste' });
  t.equal((await post(fake.url, 'k-1', chargeBody())).status, 401);
  t.equal((await post(fake.url, 'k-1', chargeBody(), { authorization: 'Bearer errado' })).status, 401);
  t.equal((await get(fake.url, '/v1/charges/k-1')).status, 401);
  const ok = await post(fake.url, 'k-1', chargeBody(), { authorization: 'Bearer segredo-de-teste' });
  t.equal(ok.status, 200);
  t.equal((await get(fake.url, '/v1/charges/k-1', { authorization: 'Bearer segredo-de-teste' })).status, 200);
  t.equal((await get(fake.url, '/__ledger')).status, 200);
  t.equal(fake.ledger().length, 1);
});

t.test('the ledger survives a restart when it has a file', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fake-gateway-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const ledgerFile = join(dir, 'ledger.jsonl');
  const first = await startFakeGateway({ ledgerFile });
  const charged = await post(first.url, 'k-1', chargeBody({ card_token: 'tok_recusa_reversivel' }));
  await first.close();
  t.notMatch(readFileSync(ledgerFile, 'utf8'), /tok_/, 'the card token is not written to the file');

  const second = await started(t, { ledgerFile });
  t.same((await get(second.url, '/__ledger')).body, { entries: first.ledger() });
  const replay = await post(second.url, 'k-1', chargeBody({ card_token: 'tok_recusa_reversivel' }));
  t.equal(replay.replayed, true);
  t.same(replay.body, charged.body);
  t.equal((await post(second.url, 'k-1', chargeBody({ amount_cents: 1 }))).status, 409);
  await post(second.url, 'k-2', chargeBody());
  t.same(
    second.ledger().map((entry) => entry.seq),
    [1, 2],
  );
  t.equal(readFileSync(ledgerFile, 'utf8').trim().split('\n').length, 2);
});

t.test('a torn last line is dropped on load; a corrupt line elsewhere stops the start', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fake-gateway-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const ledgerFile = join(dir, 'ledger.jsonl');
  const first = await startFakeGateway({ ledgerFile });
  await post(first.url, 'k-1', chargeBody());
  await first.close();
  const good = readFileSync(ledgerFile, 'utf8');
  writeFileSync(ledgerFile, `${good}{"seq":2,"key":"k-`);
  const second = await started(t, { ledgerFile });
  t.equal(second.ledger().length, 1);
  await second.close();
  writeFileSync(ledgerFile, `not json\n${good}`);
  await t.rejects(startFakeGateway({ ledgerFile }), /not a fake gateway ledger entry/);
});

t.test('two concurrent requests with one key execute once', async (t) => {
  // The latency is processing time: the first request is between look-up and record when the second arrives.
  const fake = await started(t, { latencyMs: 100 });
  const [a, b] = await Promise.all([
    post(fake.url, 'k-1', chargeBody()),
    post(fake.url, 'k-1', chargeBody()),
  ]);
  t.equal(fake.ledger().length, 1);
  t.same(a.body, b.body);
  t.same([a.replayed, b.replayed].sort(), [false, true]);
  const [c, d] = await Promise.all([
    post(fake.url, 'k-2', chargeBody()),
    post(fake.url, 'k-2', chargeBody({ amount_cents: 1 })),
  ]);
  t.same([c.status, d.status].sort(), [200, 409]);
  t.equal(fake.ledger().length, 2);
});

t.test('a lookup while the charge is being processed waits for it instead of saying not_found', async (t) => {
  const fake = await started(t, { latencyMs: 300 });
  const charging = post(fake.url, 'k-1', chargeBody());
  const deadline = Date.now() + 2_000;
  while (fake.stats().in_progress === 0) {
    if (Date.now() > deadline) throw new Error('the charge never started processing');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  const found = await get(fake.url, '/v1/charges/k-1');
  t.equal(found.status, 200);
  t.same(found.body, (await charging).body);
});

t.test('the seeded mix is reproducible and close to the configured rates', async (t) => {
  const keys = Array.from({ length: 1_000 }, (_, i) => `mix-${i}`);
  async function outcomes(seed: number, count: number): Promise<string[]> {
    const fake = await startFakeGateway({ seed, declineRate: 0.3, irreversibleShare: 0.25 });
    try {
      const results: string[] = [];
      for (let i = 0; i < count; i += 50) {
        const batch = await Promise.all(
          keys
            .slice(i, Math.min(i + 50, count))
            .map((key) => post(fake.url, key, chargeBody({ card_token: 'tok_qualquer' }))),
        );
        results.push(
          ...batch.map(
            ({ body }) =>
              `${String(body.status)}:${JSON.stringify(body.code)}:${JSON.stringify(body.reversible)}`,
          ),
        );
      }
      return results;
    } finally {
      await fake.close();
    }
  }
  const [first, again, other] = [await outcomes(7, 1_000), await outcomes(7, 1_000), await outcomes(8, 100)];
  t.same(again, first, 'same seed, same outcome for every key');
  t.not(other.join(), first.slice(0, 100).join(), 'another seed, another mix');
  const declines = first.filter((outcome) => outcome.startsWith('declined'));
  t.ok(declines.length > 250 && declines.length < 350, `declines: ${declines.length} of 1000`);
  const irreversible = declines.filter((outcome) => outcome.endsWith(':false'));
  const share = irreversible.length / declines.length;
  t.ok(share > 0.15 && share < 0.35, `irreversible share: ${share.toFixed(2)}`);
});

t.test('the control API: config, stats, reset and errors', async (t) => {
  const fake = await started(t);
  t.match((await control(fake.url, 'POST', '/__config', { declineRate: 1, irreversibleShare: 1 })).body, {
    declineRate: 1,
    irreversibleShare: 1,
    latencyMs: 0,
  });
  const declined = await post(fake.url, 'k-1', chargeBody({ card_token: 'tok_mix' }));
  t.match(declined.body, { status: 'declined', reversible: false });
  t.equal((await control(fake.url, 'POST', '/__config', { declineRate: 2 })).status, 400);
  t.equal((await control(fake.url, 'POST', '/__config', { unknown: 1 })).status, 400);
  t.equal((await control(fake.url, 'POST', '/__faults', { rules: [{ nth: 1, fault: 'nope' }] })).status, 400);
  t.equal(
    (
      await control(fake.url, 'POST', '/__faults', {
        rules: [
          { nth: 1, fault: 'slow' },
          { nth: 1, fault: 'hold' },
        ],
      })
    ).status,
    400,
  );
  t.match((await get(fake.url, '/__stats')).body, { requests: 1, charges_executed: 1 });
  t.same((await control(fake.url, 'POST', '/__reset')).body, { ok: true });
  t.same((await get(fake.url, '/__ledger')).body, { entries: [] });
  t.match((await get(fake.url, '/__stats')).body, { requests: 0, charges_executed: 0, faults: {} });
  t.equal((await post(fake.url, 'k-1', chargeBody({ amount_cents: 1 }))).status, 200, 'keys forgotten');
  t.same((await get(fake.url, '/nowhere')).body, { error: 'no_route' });
});
