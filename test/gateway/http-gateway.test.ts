// The HTTP client against the fake gateway (real HTTP), and against a scripted server for answers the fake
// never gives (off-contract bodies, odd statuses).
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import t, { type Test } from 'tap';
import {
  startFakeGateway,
  type FakeGateway,
  type FakeGatewayOptions,
} from '../../src/gateway/fake-gateway.ts';
import type { ChargeRequest } from '../../src/gateway/gateway.ts';
import { createHttpGateway } from '../../src/gateway/http-gateway.ts';
import { createLogger, type Logger } from '../../src/log.ts';
import { capturedLog } from '../helpers/captured-log.ts';

const silent = createLogger({ level: 'silent', format: 'json', role: 'test' });
const never = new AbortController().signal;

function chargeRequest(overrides: Partial<ChargeRequest> = {}): ChargeRequest {
  return {
    idempotencyKey: 'rec-42-2025-03-10',
    amountCents: 4_990,
    currency: 'BRL',
    cardToken: 'tok_aprova_1',
    description: 'Plano mensal',
    metadata: { recorrenciaId: 42, ciclo: '2025-03-10', tentativa: 1 },
    ...overrides,
  };
}

async function started(t: Test, options: FakeGatewayOptions = {}): Promise<FakeGateway> {
  const fake = await startFakeGateway(options);
  t.teardown(() => fake.close());
  return fake;
}

function clientFor(url: string, options: { apiKey?: string; timeoutMs?: number; log?: Logger } = {}) {
  return createHttpGateway({
    url,
    timeoutMs: options.timeoutMs ?? 2_000,
    log: options.log ?? silent,
    ...(options.apiKey === undefined ? {} : { apiKey: options.apiKey }),
  });
}

/** A server that answers every request with `handler`: for responses the fake gateway never gives. */
async function scripted(
  t: Test,
  handler: (req: IncomingMessage, res: ServerResponse) => void,
): Promise<string> {
  const server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function answer(status: number, body: unknown, raw = false) {
  return (_req: IncomingMessage, res: ServerResponse) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(raw ? String(body) : JSON.stringify(body));
  };
}

t.test('approved, reversible and irreversible declines by card token', async (t) => {
  const fake = await started(t);
  const gateway = clientFor(fake.url);
  const approved = await gateway.charge(chargeRequest({ idempotencyKey: 'k-1' }), never);
  t.match(approved, { kind: 'approved', chargeId: /^ch_/ });
  t.match(
    await gateway.charge(chargeRequest({ idempotencyKey: 'k-2', cardToken: 'tok_recusa_reversivel' }), never),
    { kind: 'declined', code: '51', reversible: true, chargeId: /^ch_/, message: /saldo/ },
  );
  t.match(
    await gateway.charge(
      chargeRequest({ idempotencyKey: 'k-3', cardToken: 'tok_recusa_irreversivel' }),
      never,
    ),
    { kind: 'declined', code: '14', reversible: false },
  );
  t.match(fake.ledger()[0], {
    key: 'k-1',
    recorrenciaId: '42',
    ciclo: '2025-03-10',
    tentativa: 1,
    amountCents: 4_990,
  });
});

t.test('a retry with the same key replays: same outcome, one ledger entry', async (t) => {
  const fake = await started(t);
  const gateway = clientFor(fake.url);
  const first = await gateway.charge(chargeRequest(), never);
  const retry = await gateway.charge(
    chargeRequest({ metadata: { recorrenciaId: 42, ciclo: '2025-03-10', tentativa: 2 } }),
    never,
  );
  t.same(retry, first);
  t.equal(fake.ledger().length, 1);
  t.equal(fake.stats().replays, 1);
});

t.test('reusing a key with another amount is rejected, not declined', async (t) => {
  const fake = await started(t);
  const gateway = clientFor(fake.url);
  await gateway.charge(chargeRequest(), never);
  const reused = await gateway.charge(chargeRequest({ amountCents: 5_990 }), never);
  t.match(reused, { kind: 'rejected', reason: /^idempotency_key_reused/ });
  t.equal(fake.ledger().length, 1);
});

t.test('an invalid request is rejected (400)', async (t) => {
  const fake = await started(t);
  const gateway = clientFor(fake.url);
  t.match(await gateway.charge(chargeRequest({ amountCents: 0 }), never), {
    kind: 'rejected',
    reason: 'invalid_request',
    message: /^amount_cents/,
    executed: false,
  });
  t.match(await gateway.charge(chargeRequest({ currency: 'brl' }), never), { kind: 'rejected' });
  t.equal(fake.stats().rejected, 2);
});

t.test('an idempotency key that cannot be a header is rejected without a request', async (t) => {
  const fake = await started(t);
  const gateway = clientFor(fake.url);
  for (const key of ['', 'com espaço', 'ç', 'k'.repeat(256), 'a\nb']) {
    t.same(await gateway.charge(chargeRequest({ idempotencyKey: key }), never), {
      kind: 'rejected',
      reason: 'invalid_idempotency_key',
      executed: false,
    });
  }
  t.same(await gateway.lookup(chargeRequest({ idempotencyKey: '' }), never), {
    kind: 'rejected',
    reason: 'invalid_idempotency_key',
    executed: false,
  });
  t.equal(fake.stats().requests, 0);
});

t.test('the api key is sent as a bearer token; refused credentials leave the outcome unknown', async (t) => {
  const fake = await started(t, { apiKey: 'chave-do-gateway' });
  const { log, entries } = capturedLog('warn');
  // Our credentials, not the request: a rejection would put the recurrence on hold, and every other with it.
  t.match(await clientFor(fake.url, { log }).charge(chargeRequest(), never), {
    kind: 'unknown',
    reason: 'unauthorized',
  });
  t.match(entries, [{ level: 50, msg: 'gateway refused our credentials: check GATEWAY_API_KEY' }]);
  t.match(await clientFor(fake.url, { apiKey: 'outra' }).charge(chargeRequest(), never), {
    kind: 'unknown',
  });
  t.match(await clientFor(fake.url).lookup(chargeRequest({ idempotencyKey: 'k-1' }), never), {
    kind: 'unknown',
    reason: 'unauthorized',
  });
  const authorized = clientFor(fake.url, { apiKey: 'chave-do-gateway' });
  t.match(await authorized.charge(chargeRequest(), never), { kind: 'approved' });
  t.match(await authorized.lookup(chargeRequest({ idempotencyKey: 'rec-42-2025-03-10' }), never), {
    kind: 'approved',
  });
});

t.test('lookup: found, declined and not_found', async (t) => {
  const fake = await started(t);
  const gateway = clientFor(fake.url);
  const charged = await gateway.charge(chargeRequest({ idempotencyKey: 'k/1' }), never);
  t.same(await gateway.lookup(chargeRequest({ idempotencyKey: 'k/1' }), never), charged);
  await gateway.charge(chargeRequest({ idempotencyKey: 'k-2', cardToken: 'tok_recusa_irreversivel' }), never);
  t.match(await gateway.lookup(chargeRequest({ idempotencyKey: 'k-2' }), never), {
    kind: 'declined',
    code: '14',
    reversible: false,
  });
  t.same(await gateway.lookup(chargeRequest({ idempotencyKey: 'never-sent' }), never), { kind: 'not_found' });
  t.equal(fake.stats().lookups, 3);
});

t.test('an already-aborted signal sends nothing and gives unknown/aborted', async (t) => {
  const fake = await started(t);
  const gateway = clientFor(fake.url);
  const aborted = AbortSignal.abort(new Error('shutting down'));
  t.same(await gateway.charge(chargeRequest(), aborted), { kind: 'unknown', reason: 'aborted' });
  t.same(await gateway.lookup(chargeRequest({ idempotencyKey: 'k-1' }), aborted), {
    kind: 'unknown',
    reason: 'aborted',
  });
  t.equal(fake.stats().requests, 0);
});

t.test('a signal aborted mid-flight gives unknown/aborted, not a timeout', async (t) => {
  const fake = await started(t);
  fake.setFaults({ rules: [{ nth: 1, fault: 'hold' }] });
  const gateway = clientFor(fake.url, { timeoutMs: 10_000 });
  const controller = new AbortController();
  const pending = gateway.charge(chargeRequest(), controller.signal);
  await fake.waitForHeld(1);
  controller.abort(new Error('worker stopping'));
  t.same(await pending, { kind: 'unknown', reason: 'aborted' });
  t.equal(fake.ledger().length, 1, 'the gateway executed it: only a lookup or retry can tell');
});

t.test(
  'a kept-alive connection dropped before the answer is retried once, on a new connection',
  async (t) => {
    const key = chargeRequest().idempotencyKey;
    const approved = answer(200, {
      status: 'approved',
      charge_id: 'ch_1',
      amount_cents: 4_990,
      currency: 'BRL',
      idempotency_key: key,
    });
    const seen = new Set<unknown>();
    const keys: Array<string | undefined> = [];
    const url = await scripted(t, (req, res) => {
      keys.push(req.headers['idempotency-key'] as string | undefined);
      // The second request on a connection finds it closed, as when the gateway ends an idle connection.
      if (seen.has(req.socket)) req.socket.destroy();
      else {
        seen.add(req.socket);
        approved(req, res);
      }
    });
    const gateway = clientFor(url);
    t.match(await gateway.charge(chargeRequest(), never), { kind: 'approved' });
    t.match(await gateway.charge(chargeRequest(), never), { kind: 'approved' }, 'not connection_reset');
    t.same(keys, [key, key, key], 'the repeat carries the same idempotency key');
    t.equal(seen.size, 2, 'the repeat went out on a new connection');
  },
);

t.test('a new connection dropped before the answer is not retried: unknown/connection_reset', async (t) => {
  let requests = 0;
  const url = await scripted(t, (req) => {
    requests += 1;
    req.socket.destroy();
  });
  t.same(await clientFor(url).charge(chargeRequest(), never), {
    kind: 'unknown',
    reason: 'connection_reset',
  });
  t.equal(requests, 1);
});

t.test('a gateway that is not listening gives unknown/connection_refused', async (t) => {
  const fake = await startFakeGateway();
  await fake.close();
  const { log, text } = capturedLog();
  t.same(await clientFor(fake.url, { log }).charge(chargeRequest(), never), {
    kind: 'unknown',
    reason: 'connection_refused',
  });
  t.match(
    text(),
    /"networkError":"ECONNREFUSED: connect ECONNREFUSED 127\.0\.0\.1:\d+"/,
    'the log has the error',
  );
});

t.test('a decline message is stored without the card token, and cut to 200 characters', async (t) => {
  const request = chargeRequest({ cardToken: 'tok_segredo_123' });
  const declined = await scripted(
    t,
    answer(200, {
      status: 'declined',
      charge_id: 'ch_1',
      code: '51',
      reversible: true,
      message: `saldo insuficiente para tok_segredo_123 ${'x'.repeat(1_000)}`,
      idempotency_key: request.idempotencyKey,
    }),
  );
  const outcome = await clientFor(declined).charge(request, never);
  t.match(outcome, {
    kind: 'declined',
    code: '51',
    message: /^saldo insuficiente para \[cartao_token\] x+$/,
  });
  t.equal(outcome.kind === 'declined' ? outcome.message.length : 0, 200);
});

t.test("a rejection carries the error's code, and the message without the card token", async (t) => {
  const request = chargeRequest({ cardToken: 'tok_segredo_123' });
  const invalid = await scripted(
    t,
    answer(400, { error: 'invalid_request', message: 'card_token tok_segredo_123 is not valid' }),
  );
  t.same(await clientFor(invalid).charge(request, never), {
    kind: 'rejected',
    reason: 'invalid_request',
    message: 'card_token [cartao_token] is not valid',
    executed: false,
  });
  // The key's earlier request may have charged: whatever the status, never an attempt ended as not run.
  for (const status of [409, 400, 422]) {
    const reused = await scripted(t, answer(status, { error: 'idempotency_key_reused' }));
    t.match(
      await clientFor(reused).charge(request, never),
      { kind: 'rejected', reason: 'idempotency_key_reused', executed: true },
      `HTTP ${status}`,
    );
  }
});

t.test(
  'a key whose first request is still in progress (409 idempotency_key_in_use) is transient, not a block',
  async (t) => {
    const inUse = await scripted(
      t,
      answer(409, {
        error: 'idempotency_key_in_use',
        message: 'another request with this key is in progress',
      }),
    );
    t.same(await clientFor(inUse).charge(chargeRequest(), never), { kind: 'unknown', reason: 'key_in_use' });
  },
);

t.test('off-contract 200 bodies are unknown, never a decline', async (t) => {
  const key = chargeRequest().idempotencyKey;
  const cases: Array<[string, unknown, boolean]> = [
    ['not JSON', '<html>oops</html>', true],
    ['empty', '', true],
    ['unknown status', { status: 'pending', idempotency_key: key }, false],
    [
      'decline without reversible',
      { status: 'declined', charge_id: null, code: '51', idempotency_key: key },
      false,
    ],
    [
      'another key',
      { status: 'approved', charge_id: 'ch_1', amount_cents: 4_990, currency: 'BRL', idempotency_key: 'x' },
      false,
    ],
    [
      'another amount',
      { status: 'approved', charge_id: 'ch_1', amount_cents: 1, currency: 'BRL', idempotency_key: key },
      false,
    ],
    // Postgres text cannot hold a NUL: an identifier with one could never be recorded.
    [
      'a NUL in the charge id',
      {
        status: 'approved',
        charge_id: 'ch_\u00001',
        amount_cents: 4_990,
        currency: 'BRL',
        idempotency_key: key,
      },
      false,
    ],
    [
      'a NUL in the decline code',
      { status: 'declined', charge_id: null, code: '5\u00001', reversible: true, idempotency_key: key },
      false,
    ],
  ];
  for (const [name, body, raw] of cases) {
    const url = await scripted(t, answer(200, body, raw));
    const outcome = await clientFor(url).charge(chargeRequest(), never);
    t.equal(outcome.kind, 'unknown', name);
    // A resumed attempt looks its key up first: the same answer there must not pass as an approval either.
    const found = await clientFor(url).lookup(chargeRequest(), never);
    t.equal(found.kind, 'unknown', `${name}, found by a lookup`);
  }
  const url = await scripted(
    t,
    answer(200, { status: 'declined', charge_id: null, code: '05', reversible: true, idempotency_key: key }),
  );
  t.same(await clientFor(url).charge(chargeRequest(), never), {
    kind: 'declined',
    chargeId: null,
    code: '05',
    reversible: true,
    message: '',
  });
});

t.test(
  'a NUL in words for people is dropped: the decline or rejection stays readable and storable',
  async (t) => {
    const key = chargeRequest().idempotencyKey;
    const declined = await scripted(
      t,
      answer(200, {
        status: 'declined',
        charge_id: 'ch_2',
        code: '51',
        reversible: true,
        message: 'saldo\u0000 insuficiente',
        idempotency_key: key,
      }),
    );
    t.same(await clientFor(declined).charge(chargeRequest(), never), {
      kind: 'declined',
      chargeId: 'ch_2',
      code: '51',
      reversible: true,
      message: 'saldo insuficiente',
    });
    const refused = await scripted(t, answer(400, { error: 'bad\u0000code', message: 'no\u0000pe' }));
    t.same(
      await clientFor(refused).charge(chargeRequest(), never),
      { kind: 'rejected', reason: 'invalid_request', executed: false },
      "an error code with a NUL is not the gateway's word: the status names the refusal",
    );
    const worded = await scripted(t, answer(422, { error: 'unprocessable', message: 'no\u0000pe' }));
    t.same(await clientFor(worded).charge(chargeRequest(), never), {
      kind: 'rejected',
      reason: 'unprocessable',
      message: 'nope',
      executed: false,
    });
  },
);

t.test(
  'statuses: 429, 5xx and 401/403 (our credentials) are unknown; 400 and 422 rejected; a bare 404 is not "not found"',
  async (t) => {
    const statuses: Array<[number, unknown, object]> = [
      [429, { error: 'slow down' }, { kind: 'unknown', reason: 'rate_limited' }],
      [503, {}, { kind: 'unknown', reason: 'http_503' }],
      [502, 'bad gateway', { kind: 'unknown', reason: 'http_502' }],
      [403, { error: 'forbidden' }, { kind: 'unknown', reason: 'forbidden' }],
      [401, { error: 'unauthorized' }, { kind: 'unknown', reason: 'unauthorized' }],
      [400, { error: 'invalid_request' }, { kind: 'rejected', reason: 'invalid_request', executed: false }],
      [
        422,
        { error: 'unprocessable', message: 'card expired' },
        { kind: 'rejected', reason: 'unprocessable', message: 'card expired', executed: false },
      ],
      [404, { error: 'not_found' }, { kind: 'unknown', reason: 'http_404' }],
    ];
    for (const [status, body, expected] of statuses) {
      const url = await scripted(t, answer(status, body, typeof body === 'string'));
      t.same(await clientFor(url).charge(chargeRequest(), never), expected, `POST ${status}`);
    }
    const redirecting = await scripted(t, (req, res) => {
      if (req.url === '/v1/charges') {
        res.writeHead(302, { location: '/somewhere-else' }).end();
      } else {
        const key = chargeRequest().idempotencyKey;
        answer(200, {
          status: 'approved',
          charge_id: 'ch_x',
          amount_cents: 4_990,
          currency: 'BRL',
          idempotency_key: key,
        })(req, res);
      }
    });
    t.same(
      await clientFor(redirecting).charge(chargeRequest(), never),
      { kind: 'unknown', reason: 'http_302' },
      'a redirect is not followed',
    );
    const proxy404 = await scripted(t, answer(404, '<h1>Not Found</h1>', true));
    t.same(await clientFor(proxy404).lookup(chargeRequest({ idempotencyKey: 'k-1' }), never), {
      kind: 'unknown',
      reason: 'http_404',
    });
    const contract404 = await scripted(t, answer(404, { error: 'not_found' }));
    t.same(await clientFor(contract404).lookup(chargeRequest({ idempotencyKey: 'k-1' }), never), {
      kind: 'not_found',
    });
  },
);

t.test('a refused lookup is unknown: it says nothing about whether the earlier POST ran', async (t) => {
  const refusals: Array<[number, string]> = [
    [400, 'invalid_request'],
    [409, 'idempotency_key_reused'],
    [422, 'unprocessable'],
  ];
  for (const [status, error] of refusals) {
    const url = await scripted(t, answer(status, { error, message: 'no' }));
    t.same(
      await clientFor(url).lookup(chargeRequest(), never),
      { kind: 'unknown', reason: `lookup_${error}` },
      `GET ${status}`,
    );
  }
});

t.test('logs carry the key and recurrence, never the card token or the api key', async (t) => {
  const fake = await started(t, { apiKey: 'chave-secreta-123' });
  const { log, text } = capturedLog();
  const gateway = clientFor(fake.url, { apiKey: 'chave-secreta-123', log });
  await gateway.charge(chargeRequest({ cardToken: 'tok_aprova_segredo' }), never);
  await gateway.charge(
    chargeRequest({ idempotencyKey: 'k-2', cardToken: 'tok_recusa_reversivel_segredo' }),
    never,
  );
  await gateway.lookup(chargeRequest({ idempotencyKey: 'k-2' }), never);
  t.match(text(), /"idempotencyKey":"rec-42-2025-03-10"/);
  t.match(text(), /"recorrenciaId":42/);
  t.match(text(), /"outcome":"declined"/);
  t.notMatch(text(), /segredo/);
  t.notMatch(text(), /chave-secreta/);
});
