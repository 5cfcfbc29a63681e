// Every fault kind of the fake gateway as the HTTP client sees it, and what the ledger says afterwards.
import t, { type Test } from 'tap';
import { startFakeGateway, type FakeGateway, type FaultPlan } from '../../src/gateway/fake-gateway.ts';
import type { ChargeRequest } from '../../src/gateway/gateway.ts';
import { createHttpGateway } from '../../src/gateway/http-gateway.ts';
import { createLogger } from '../../src/log.ts';

const never = new AbortController().signal;
const TIMEOUT_MS = 200;

function chargeRequest(overrides: Partial<ChargeRequest> = {}): ChargeRequest {
  return {
    idempotencyKey: 'rec-7-2025-05-01',
    amountCents: 2_500,
    currency: 'BRL',
    cardToken: 'tok_aprova',
    description: 'Plano mensal',
    metadata: { recorrenciaId: 7, ciclo: '2025-05-01', tentativa: 1 },
    ...overrides,
  };
}

/** A fake with `plan` installed and a client that gives up after TIMEOUT_MS. */
async function setUp(t: Test, plan: FaultPlan, timeoutMs = TIMEOUT_MS) {
  const fake: FakeGateway = await startFakeGateway();
  t.teardown(() => fake.close());
  fake.setFaults(plan);
  const log = createLogger({ level: 'silent', format: 'json', role: 'test' });
  return { fake, gateway: createHttpGateway({ url: fake.url, timeoutMs, log }) };
}

/** Plans go through the control API here, as the other suites use it. */
async function postFaults(fake: FakeGateway, plan: FaultPlan): Promise<void> {
  const response = await fetch(`${fake.url}/__faults`, { method: 'POST', body: JSON.stringify(plan) });
  if (response.status !== 200) throw new Error(`POST /__faults: ${response.status} ${await response.text()}`);
}

t.test('timeout_before: unknown, nothing executed, lookup says not_found', async (t) => {
  const { fake, gateway } = await setUp(t, { rules: [{ nth: 1, fault: 'timeout_before', holdMs: 1_000 }] });
  t.same(await gateway.charge(chargeRequest(), never), { kind: 'unknown', reason: 'timeout' });
  t.equal(fake.ledger().length, 0);
  t.same(await gateway.lookup(chargeRequest(), never), { kind: 'not_found' });
  t.match(fake.stats(), { faults: { timeout_before: 1 }, charges_executed: 0 });
});

t.test('timeout_after: unknown, executed once; lookup finds it and a retry replays it', async (t) => {
  const { fake, gateway } = await setUp(t, { rules: [{ nth: 1, fault: 'timeout_after', holdMs: 1_000 }] });
  t.same(await gateway.charge(chargeRequest(), never), { kind: 'unknown', reason: 'timeout' });
  t.equal(fake.ledger().length, 1);
  const found = await gateway.lookup(chargeRequest(), never);
  t.match(found, { kind: 'approved', chargeId: fake.ledger()[0]?.chargeId });
  t.same(await gateway.charge(chargeRequest(), never), found);
  t.equal(fake.ledger().length, 1, 'the retry did not charge again');
  t.equal(fake.stats().replays, 1);
});

t.test('reset_before and reset_after: connection_reset, with and without a ledger entry', async (t) => {
  const { fake, gateway } = await setUp(t, {
    rules: [
      { nth: 1, fault: 'reset_before' },
      { nth: 2, fault: 'reset_after' },
    ],
  });
  t.same(await gateway.charge(chargeRequest({ idempotencyKey: 'k-before' }), never), {
    kind: 'unknown',
    reason: 'connection_reset',
  });
  t.equal(fake.ledger().length, 0);
  t.same(await gateway.charge(chargeRequest({ idempotencyKey: 'k-after' }), never), {
    kind: 'unknown',
    reason: 'connection_reset',
  });
  t.same(
    fake.ledger().map((entry) => entry.key),
    ['k-after'],
  );
  t.match(await gateway.charge(chargeRequest({ idempotencyKey: 'k-after' }), never), { kind: 'approved' });
  t.equal(fake.ledger().length, 1);
});

t.test(
  'error_500_before and error_500_after: http_500; after, a retry replays the real outcome',
  async (t) => {
    const { fake, gateway } = await setUp(t, {
      rules: [
        { nth: 1, fault: 'error_500_before' },
        { nth: 2, fault: 'error_500_after' },
      ],
    });
    const request = chargeRequest({ cardToken: 'tok_recusa_reversivel' });
    t.same(await gateway.charge(request, never), { kind: 'unknown', reason: 'http_500' });
    t.equal(fake.ledger().length, 0);
    t.same(await gateway.charge(request, never), { kind: 'unknown', reason: 'http_500' });
    t.equal(fake.ledger().length, 1);
    t.match(await gateway.charge(request, never), { kind: 'declined', code: '51', reversible: true });
    t.match(fake.stats(), {
      charges_executed: 1,
      replays: 1,
      faults: { error_500_before: 1, error_500_after: 1 },
    });
  },
);

t.test('rate_limited: unknown/rate_limited and nothing executed', async (t) => {
  const { fake, gateway } = await setUp(t, { rules: [{ nth: 1, fault: 'rate_limited' }] });
  t.same(await gateway.charge(chargeRequest(), never), { kind: 'unknown', reason: 'rate_limited' });
  t.equal(fake.ledger().length, 0);
  t.match(await gateway.charge(chargeRequest(), never), { kind: 'approved' });
});

t.test('slow: executed normally after the delay', async (t) => {
  const { fake, gateway } = await setUp(t, { rules: [{ nth: 1, fault: 'slow', delayMs: 150 }] }, 2_000);
  const started = performance.now();
  t.match(await gateway.charge(chargeRequest(), never), { kind: 'approved' });
  t.ok(performance.now() - started >= 140, 'the answer waited for the delay');
  t.equal(fake.ledger().length, 1);
});

t.test('slow beyond the client timeout: unknown/timeout, but the charge still executes', async (t) => {
  const { fake, gateway } = await setUp(t, { rules: [{ nth: 1, fault: 'slow', delayMs: 400 }] });
  t.same(await gateway.charge(chargeRequest(), never), { kind: 'unknown', reason: 'timeout' });
  const deadline = Date.now() + 2_000;
  while (fake.ledger().length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  t.equal(fake.ledger().length, 1);
});

t.test('decline_reversible and decline_irreversible force the outcome, and replays agree', async (t) => {
  const { fake, gateway } = await setUp(t, {
    rules: [
      { nth: 1, fault: 'decline_reversible' },
      { nth: 2, fault: 'decline_irreversible' },
    ],
  });
  const reversible = chargeRequest({ idempotencyKey: 'k-r' });
  const irreversible = chargeRequest({ idempotencyKey: 'k-i' });
  t.match(await gateway.charge(reversible, never), { kind: 'declined', code: '51', reversible: true });
  t.match(await gateway.charge(irreversible, never), { kind: 'declined', code: '14', reversible: false });
  t.match(await gateway.charge(reversible, never), { kind: 'declined', code: '51' });
  t.match(await gateway.charge(irreversible, never), { kind: 'declined', code: '14' });
  t.equal(fake.ledger().length, 2);
});

t.test('hold: executed, answered only on release; a lookup meanwhile finds it', async (t) => {
  const { fake, gateway } = await setUp(t, { rules: [{ nth: 1, fault: 'hold' }] }, 5_000);
  let settled = false;
  const pending = gateway.charge(chargeRequest(), never).finally(() => {
    settled = true;
  });
  await fake.waitForHeld(1);
  t.equal(fake.ledger().length, 1);
  t.match(await gateway.lookup(chargeRequest(), never), { kind: 'approved' });
  t.equal(settled, false, 'still waiting for the release');
  const released = await fetch(`${fake.url}/__release`, { method: 'POST' });
  t.same(await released.json(), { released: 1 });
  t.match(await pending, { kind: 'approved' });
  t.equal(fake.stats().held, 0);
});

t.test('rules count charge requests from when the plan is installed; DELETE clears it', async (t) => {
  const { fake, gateway } = await setUp(t, { rules: [] });
  await gateway.charge(chargeRequest({ idempotencyKey: 'k-0' }), never);
  await gateway.lookup(chargeRequest({ idempotencyKey: 'k-0' }), never);
  await postFaults(fake, { rules: [{ nth: 2, fault: 'rate_limited' }] });
  t.match(await gateway.charge(chargeRequest({ idempotencyKey: 'k-1' }), never), { kind: 'approved' });
  await gateway.lookup(chargeRequest({ idempotencyKey: 'k-1' }), never);
  t.same(await gateway.charge(chargeRequest({ idempotencyKey: 'k-2' }), never), {
    kind: 'unknown',
    reason: 'rate_limited',
  });
  await postFaults(fake, { rules: [{ nth: 1, fault: 'rate_limited' }] });
  const cleared = await fetch(`${fake.url}/__faults`, { method: 'DELETE' });
  t.equal(cleared.status, 200);
  t.match(await gateway.charge(chargeRequest({ idempotencyKey: 'k-3' }), never), { kind: 'approved' });
});

t.test('random faults are deterministic for a seed and roughly follow the rate', async (t) => {
  async function run(seed: number): Promise<string[]> {
    const { fake, gateway } = await setUp(t, {
      random: { seed, rate: 0.3, kinds: ['rate_limited', 'error_500_before'] },
    });
    const outcomes: string[] = [];
    for (let i = 0; i < 200; i += 1) {
      const outcome = await gateway.charge(chargeRequest({ idempotencyKey: `k-${i}` }), never);
      outcomes.push(outcome.kind === 'unknown' ? outcome.reason : outcome.kind);
    }
    await fake.close();
    return outcomes;
  }
  const first = await run(42);
  t.same(await run(42), first);
  t.not((await run(43)).join(), first.join());
  const faulted = first.filter((outcome) => outcome !== 'approved').length;
  t.ok(faulted > 35 && faulted < 85, `faulted ${faulted} of 200`);
  t.ok(first.includes('rate_limited') && first.includes('http_500'), 'both kinds drawn');
});
