import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { problemsOf } from '../helpers/config.ts';
import { createHttpGateway } from '../../src/gateway/http-gateway.ts';
import { createLogger } from '../../src/log.ts';
import { fakeGatewayOptionsFrom, startFakeGatewayRole } from '../../src/roles/fake-gateway.ts';

const log = createLogger({ level: 'silent', format: 'json', role: 'fake-gateway' });

t.test('defaults: 127.0.0.1:8090, no latency, no declines, seed 1, no api key', async (t) => {
  t.same(fakeGatewayOptionsFrom({ FAKE_GATEWAY_LEDGER_FILE: '', UNRELATED: 'x' }), {
    port: 8090,
    host: '127.0.0.1',
    latencyMs: 0,
    declineRate: 0,
    irreversibleShare: 0.2,
    seed: 1,
  });
});

t.test('every bad variable is named', async (t) => {
  const problems = problemsOf(() =>
    fakeGatewayOptionsFrom({
      FAKE_GATEWAY_PORT: '70000',
      FAKE_GATEWAY_LATENCY_MS: 'slow',
      FAKE_GATEWAY_DECLINE_RATE: '1.5',
      FAKE_GATEWAY_IRREVERSIBLE_SHARE: '-0.1',
      FAKE_GATEWAY_SEED: '1.5',
    }),
  );
  t.same(problems.map((problem) => problem.split(':')[0]).sort(), [
    'FAKE_GATEWAY_DECLINE_RATE',
    'FAKE_GATEWAY_IRREVERSIBLE_SHARE',
    'FAKE_GATEWAY_LATENCY_MS',
    'FAKE_GATEWAY_PORT',
    'FAKE_GATEWAY_SEED',
  ]);
});

t.test('the role serves the contract with its settings and stops (twice) cleanly', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fake-gateway-role-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const ledgerFile = join(dir, 'ledger.jsonl');
  const running = await startFakeGatewayRole(
    {
      FAKE_GATEWAY_PORT: '0',
      FAKE_GATEWAY_DECLINE_RATE: '1',
      FAKE_GATEWAY_IRREVERSIBLE_SHARE: '0',
      FAKE_GATEWAY_LEDGER_FILE: ledgerFile,
      GATEWAY_API_KEY: 'chave-compartilhada',
    },
    log,
  );
  t.match(running.url, /^http:\/\/127\.0\.0\.1:\d+$/);
  const gateway = createHttpGateway({
    url: running.url,
    apiKey: 'chave-compartilhada',
    timeoutMs: 2_000,
    log,
  });
  const request = {
    idempotencyKey: 'k-1',
    amountCents: 1_000,
    currency: 'BRL',
    cardToken: 'tok_mix',
    description: 'x',
    metadata: { recorrenciaId: 1, ciclo: '2025-01-31', tentativa: 1 },
  };
  const outcome = await gateway.charge(request, new AbortController().signal);
  t.match(outcome, { kind: 'declined', reversible: true });
  t.match(readFileSync(ledgerFile, 'utf8'), /"key":"k-1"/);
  await running.stop();
  await running.stop();
  t.match(await gateway.lookup(request, new AbortController().signal), {
    kind: 'unknown',
    reason: 'connection_refused',
  });
});
