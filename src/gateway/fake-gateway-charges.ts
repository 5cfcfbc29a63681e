// The fake gateway's /v1 endpoints: charge (validate, then execute or replay under the key's lock, with the
// request's scripted fault applied before or after) and lookup. The HTTP server and control API are in
// fake-gateway.ts.
import { timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../log.ts';
import { FAULTS_BEFORE_EXECUTION, type Fault, type FaultKind } from './fake-gateway-faults.ts';
import { invalid, MAX_BODY_BYTES, readBody, send, zodMessage, type Reply } from './fake-gateway-http.ts';
import { fingerprintOf, responseBodyOf, type Ledger } from './fake-gateway-ledger.ts';
import { chargeIdFor, decide, type Forced, type MixSettings } from './fake-gateway-outcomes.ts';
import { chargeRequestBodySchema, IDEMPOTENCY_KEY, type ChargeRequestBody } from './wire.ts';

export type DeskSettings = MixSettings & { latencyMs: number };

export type DeskCounters = {
  requests: number;
  charge_requests: number;
  charges_executed: number;
  replays: number;
  lookups: number;
  rejected: number;
};

const zeroCounters = (): DeskCounters => ({
  requests: 0,
  charge_requests: 0,
  charges_executed: 0,
  replays: 0,
  lookups: 0,
  rejected: 0,
});

/** Runs work for one key at a time, in arrival order; different keys never wait for each other. */
function createKeyedLock() {
  const tails = new Map<string, Promise<void>>();
  return async function withKeyLock<T>(key: string, work: () => Promise<T>): Promise<T> {
    const previous = tails.get(key);
    const { promise: done, resolve } = Promise.withResolvers<void>();
    const tail = (previous ?? Promise.resolve()).then(() => done);
    tails.set(key, tail);
    if (previous !== undefined) await previous;
    try {
      return await work();
    } finally {
      resolve();
      if (tails.get(key) === tail) tails.delete(key);
    }
  };
}

export function createChargeDesk(deps: {
  settings: () => DeskSettings;
  ledger: Ledger;
  nextFault: () => Fault | undefined;
  apiKey: string | undefined;
  /** Aborted when the fake closes: every wait ends and its connection is dropped. */
  lifetime: AbortSignal;
  log: Logger | undefined;
}) {
  const { ledger, lifetime, log } = deps;
  const withKeyLock = createKeyedLock();
  const holds = new Set<(released: boolean) => void>();
  const expectedAuth = deps.apiKey === undefined ? undefined : Buffer.from(`Bearer ${deps.apiKey}`);
  let counters = zeroCounters();
  let inProgress = 0;
  // The most charge requests ever processed at once: what a concurrency cap on the client side must bound.
  let maxInProgress = 0;
  let fired: Partial<Record<FaultKind, number>> = {};

  /** Waits `ms`; false when the fake is closing. */
  async function pause(ms: number): Promise<boolean> {
    try {
      await sleep(ms, undefined, { signal: lifetime });
      return true;
    } catch {
      return false;
    }
  }

  function holdUntilReleased(): Promise<boolean> {
    const { promise, resolve } = Promise.withResolvers<boolean>();
    holds.add(resolve);
    return promise;
  }

  function endHolds(released: boolean): number {
    const waiting = [...holds];
    holds.clear();
    for (const resolve of waiting) resolve(released);
    return waiting.length;
  }

  function authorized(req: IncomingMessage): boolean {
    if (expectedAuth === undefined) return true;
    const given = Buffer.from(req.headers.authorization ?? '');
    return given.length === expectedAuth.length && timingSafeEqual(given, expectedAuth);
  }

  /** Validates the request, then processes it under its key's lock (execute, replay or 409). */
  async function validateAndProcess(
    req: IncomingMessage,
    raw: string | undefined,
    fault?: Fault,
  ): Promise<Reply> {
    if (!authorized(req)) return { status: 401, body: { error: 'unauthorized' } };
    const key = req.headers['idempotency-key'];
    if (typeof key !== 'string' || !IDEMPOTENCY_KEY.test(key)) {
      return invalid('Idempotency-Key header required: 1..255 printable ASCII characters, no spaces');
    }
    if (!/^application\/json\b/i.test(req.headers['content-type'] ?? '')) {
      return invalid('Content-Type must be application/json');
    }
    if (raw === undefined) return invalid(`body larger than ${MAX_BODY_BYTES} bytes`);
    let json: unknown;
    try {
      json = JSON.parse(raw);
    } catch {
      return invalid('body is not JSON');
    }
    const parsed = chargeRequestBodySchema.safeParse(json);
    if (!parsed.success) return invalid(zodMessage(parsed.error));
    const body = parsed.data;
    const fingerprint = fingerprintOf(body);
    const forced: Forced | undefined =
      fault?.kind === 'decline_reversible' || fault?.kind === 'decline_irreversible' ? fault.kind : undefined;

    return withKeyLock(key, async () => {
      inProgress += 1;
      maxInProgress = Math.max(maxInProgress, inProgress);
      try {
        return await processCharge(key, body, fingerprint, forced);
      } finally {
        inProgress -= 1;
      }
    });
  }

  /** Runs under the key's lock: executes the charge, or replays (or refuses) a key seen before. */
  async function processCharge(
    key: string,
    body: ChargeRequestBody,
    fingerprint: string,
    forced: Forced | undefined,
  ): Promise<Reply> {
    // Look, then process (the latency), then record: like a real gateway, so only the key's lock keeps a
    // concurrent request with the same key from executing too.
    const existing = ledger.find(key);
    const { latencyMs } = deps.settings();
    if (latencyMs > 0 && !(await pause(latencyMs))) return { status: 503, body: { error: 'shutting_down' } };
    const settings = deps.settings();
    if (existing !== undefined) {
      if (existing.fingerprint !== fingerprint) {
        return {
          status: 409,
          body: { error: 'idempotency_key_reused', message: 'key used before with different parameters' },
        };
      }
      counters.replays += 1;
      return { status: 200, body: responseBodyOf(existing), headers: { 'idempotent-replayed': 'true' } };
    }
    const decision = decide({ key, cardToken: body.card_token, forced }, settings);
    const entry = ledger.record({
      key,
      recorrenciaId: body.metadata.recorrencia_id,
      ciclo: body.metadata.ciclo,
      tentativa: body.metadata.tentativa,
      amountCents: body.amount_cents,
      currency: body.currency,
      ...(decision.status === 'declined'
        ? { status: 'declined' as const, code: decision.code, reversible: decision.reversible }
        : { status: 'approved' as const }),
      chargeId: chargeIdFor(settings.seed, key),
      fingerprint,
    });
    counters.charges_executed += 1;
    return { status: 200, body: responseBodyOf(entry) };
  }

  /** Before-execution faults: answer (or drop the connection) without executing. */
  async function failBefore(fault: Fault, req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (fault.kind === 'reset_before') return void req.socket.destroy();
    if (fault.kind === 'error_500_before') {
      return send(res, { status: 500, body: { error: 'internal_error' } });
    }
    if (fault.kind === 'rate_limited') {
      return send(res, { status: 429, body: { error: 'rate_limited' }, headers: { 'retry-after': '1' } });
    }
    // timeout_before: answer only after the client has given up.
    if (await pause(fault.holdMs)) send(res, { status: 504, body: { error: 'gateway_timeout' } });
    else req.socket.destroy();
  }

  /** After-execution faults: the charge is in the ledger; the response is lost, replaced or delayed. */
  async function deliver(fault: Fault | undefined, reply: Reply, req: IncomingMessage, res: ServerResponse) {
    switch (fault?.kind) {
      case 'reset_after':
        return void req.socket.destroy();
      case 'error_500_after':
        return send(res, { status: 500, body: { error: 'internal_error' } });
      case 'timeout_after':
        if (await pause(fault.holdMs)) send(res, reply);
        else req.socket.destroy();
        return;
      case 'hold':
        if (await holdUntilReleased()) send(res, reply);
        else req.socket.destroy();
        return;
      default:
        return send(res, reply);
    }
  }

  return {
    async charge(req: IncomingMessage, res: ServerResponse): Promise<void> {
      counters.requests += 1;
      counters.charge_requests += 1;
      // Counted on arrival, so nth follows the order requests reached the fake.
      const fault = deps.nextFault();
      if (fault !== undefined) {
        fired[fault.kind] = (fired[fault.kind] ?? 0) + 1;
        log?.debug({ fault: fault.kind, nth: counters.charge_requests }, 'fake gateway fault');
      }
      const raw = await readBody(req);
      if (fault !== undefined && FAULTS_BEFORE_EXECUTION.has(fault.kind)) return failBefore(fault, req, res);
      if (fault?.kind === 'slow' && !(await pause(fault.delayMs))) return void req.socket.destroy();
      const reply = await validateAndProcess(req, raw, fault);
      if (reply.status >= 400 && reply.status < 500) counters.rejected += 1;
      return deliver(fault, reply, req, res);
    },

    async lookup(req: IncomingMessage, res: ServerResponse, encodedKey: string): Promise<void> {
      counters.requests += 1;
      counters.lookups += 1;
      let key: string;
      try {
        key = decodeURIComponent(encodedKey);
      } catch {
        key = '';
      }
      const reply: Reply | undefined = !authorized(req)
        ? { status: 401, body: { error: 'unauthorized' } }
        : IDEMPOTENCY_KEY.test(key)
          ? undefined
          : invalid('the key in the path is not a valid idempotency key');
      if (reply !== undefined) {
        counters.rejected += 1;
        return send(res, reply);
      }
      // No latency (it models charge processing). Taking the key's lock means "not found" is never said of
      // a charge being processed right now.
      const entry = await withKeyLock(key, async () => ledger.find(key));
      if (entry === undefined) return send(res, { status: 404, body: { error: 'not_found' } });
      send(res, { status: 200, body: responseBodyOf(entry) });
    },

    /** Sends every held response; returns how many there were. */
    release: () => endHolds(true),
    /** Drops every held response (the fake is closing). */
    dropHeld: () => endHolds(false),
    stats: () => ({
      ...counters,
      in_progress: inProgress,
      max_in_progress: maxInProgress,
      held: holds.size,
      faults: { ...fired },
    }),
    resetStats(): void {
      counters = zeroCounters();
      maxInProgress = inProgress;
      fired = {};
    },
  };
}
