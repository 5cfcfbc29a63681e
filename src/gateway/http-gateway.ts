// The PaymentGateway over HTTP (global fetch: undici keeps connections alive). It classifies every response
// into the four outcomes and never turns an ambiguous one into a decline: when in doubt, `unknown`.
import type { Logger } from '../log.ts';
import type { ChargeOutcome, ChargeRequest, PaymentGateway } from './gateway.ts';
import {
  chargeResponseBodySchema,
  errorBodySchema,
  IDEMPOTENCY_KEY,
  type ChargeRequestBody,
} from './wire.ts';

export type HttpGatewayOptions = { url: string; apiKey?: string; timeoutMs: number; log: Logger };

/** Statuses that mean our request is wrong: retrying the same request cannot help. */
const REJECTED_STATUSES = new Map([
  [400, 'invalid_request'],
  [401, 'unauthorized'],
  [403, 'forbidden'],
  [409, 'idempotency_key_reused'],
  [422, 'unprocessable'],
]);

type Exchange = { status: number; body: unknown; replayed: boolean } | { failed: string };

/** undici reports network failures as TypeError('fetch failed') with the system error as `cause`. */
function networkReason(error: unknown): string {
  const cause = (error as { cause?: { code?: unknown } } | undefined)?.cause;
  const code = typeof cause?.code === 'string' ? cause.code : undefined;
  switch (code) {
    case 'ECONNRESET':
    case 'EPIPE':
    case 'UND_ERR_SOCKET':
      return 'connection_reset';
    case 'ECONNREFUSED':
      return 'connection_refused';
    case 'UND_ERR_CONNECT_TIMEOUT':
      return 'connect_timeout';
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return 'dns_error';
    default:
      return 'network_error';
  }
}

/** Maps a 200 body; anything off-contract is `unknown` (never a decline). */
function fromChargeBody(body: unknown, expected: { key: string; request?: ChargeRequest }): ChargeOutcome {
  const parsed = chargeResponseBodySchema.safeParse(body);
  if (!parsed.success) return { kind: 'unknown', reason: 'invalid_body' };
  const charge = parsed.data;
  // A response about another key, or an approval of another amount, is not an answer to our request.
  if (charge.idempotency_key !== expected.key) return { kind: 'unknown', reason: 'mismatched_response' };
  if (charge.status === 'approved') {
    const { request } = expected;
    if (request && (charge.amount_cents !== request.amountCents || charge.currency !== request.currency)) {
      return { kind: 'unknown', reason: 'mismatched_response' };
    }
    return { kind: 'approved', chargeId: charge.charge_id };
  }
  return {
    kind: 'declined',
    chargeId: charge.charge_id,
    code: charge.code,
    reversible: charge.reversible,
    message: charge.message,
  };
}

function rejectedReason(status: number, body: unknown): string {
  const parsed = errorBodySchema.safeParse(body);
  const base = parsed.success ? parsed.data.error : (REJECTED_STATUSES.get(status) ?? `http_${status}`);
  const message = parsed.success ? parsed.data.message : undefined;
  return message === undefined ? base : `${base}: ${message.slice(0, 200)}`;
}

function classify(
  exchange: Exchange,
  expected: { key: string; request?: ChargeRequest },
): ChargeOutcome | { kind: 'not_found' } {
  if ('failed' in exchange) return { kind: 'unknown', reason: exchange.failed };
  const { status, body } = exchange;
  if (status === 200) return fromChargeBody(body, expected);
  if (REJECTED_STATUSES.has(status)) return { kind: 'rejected', reason: rejectedReason(status, body) };
  if (status === 429) return { kind: 'unknown', reason: 'rate_limited' };
  // Only the contract's own body means "never executed": a bare 404 may come from a proxy or a wrong URL.
  if (status === 404 && errorBodySchema.safeParse(body).data?.error === 'not_found') {
    return { kind: 'not_found' };
  }
  return { kind: 'unknown', reason: `http_${status}` };
}

export function createHttpGateway(options: HttpGatewayOptions): PaymentGateway {
  const base = options.url.replace(/\/+$/, '');
  const { log, timeoutMs } = options;

  /** One bounded request/response; the timeout covers reading the body too. */
  async function exchange(path: string, init: RequestInit, signal: AbortSignal): Promise<Exchange> {
    if (signal.aborted) return { failed: 'aborted' };
    const bounded = AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]);
    const headers = new Headers(init.headers);
    if (options.apiKey !== undefined) headers.set('authorization', `Bearer ${options.apiKey}`);
    try {
      // A redirect is off-contract: following it could turn the charge into a GET somewhere else.
      const response = await fetch(`${base}${path}`, {
        ...init,
        headers,
        redirect: 'manual',
        signal: bounded,
      });
      const text = await response.text();
      let body: unknown;
      try {
        body = text === '' ? undefined : JSON.parse(text);
      } catch {
        body = undefined;
      }
      if (response.status === 200 && body === undefined) return { failed: 'invalid_body' };
      return {
        status: response.status,
        body,
        replayed: response.headers.get('idempotent-replayed') === 'true',
      };
    } catch (error) {
      if (bounded.aborted) {
        const reason: unknown = bounded.reason;
        return {
          failed: reason instanceof DOMException && reason.name === 'TimeoutError' ? 'timeout' : 'aborted',
        };
      }
      return { failed: networkReason(error) };
    }
  }

  return {
    async charge(request, signal) {
      const context = {
        idempotencyKey: request.idempotencyKey,
        recorrenciaId: request.metadata.recorrenciaId,
        ciclo: request.metadata.ciclo,
        tentativa: request.metadata.tentativa,
      };
      // fetch would throw on such a header before sending anything; say so instead of "unknown".
      if (!IDEMPOTENCY_KEY.test(request.idempotencyKey)) {
        log.warn(context, 'gateway charge not sent: invalid idempotency key');
        return { kind: 'rejected', reason: 'invalid_idempotency_key' };
      }
      const body: ChargeRequestBody = {
        amount_cents: request.amountCents,
        currency: request.currency,
        card_token: request.cardToken,
        description: request.description,
        metadata: {
          recorrencia_id: String(request.metadata.recorrenciaId),
          ciclo: request.metadata.ciclo,
          tentativa: request.metadata.tentativa,
        },
      };
      const started = performance.now();
      log.debug({ ...context, amountCents: request.amountCents }, 'gateway charge sent');
      const result = await exchange(
        '/v1/charges',
        {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'idempotency-key': request.idempotencyKey },
          body: JSON.stringify(body),
        },
        signal,
      );
      const outcome = classify(result, { key: request.idempotencyKey, request });
      // A POST never answers 404 not_found by contract; if something does, nothing is known.
      const final: ChargeOutcome =
        outcome.kind === 'not_found' ? { kind: 'unknown', reason: 'http_404' } : outcome;
      const fields = {
        ...context,
        outcome: final.kind,
        ...('code' in final ? { code: final.code, reversible: final.reversible } : {}),
        ...('reason' in final ? { reason: final.reason } : {}),
        replayed: 'replayed' in result ? result.replayed : undefined,
        ms: Math.round(performance.now() - started),
      };
      // Approvals and declines are recorded in the database, and the charge path logs each decline once with
      // its decision; logging them here too would cost another write per charge at a million a morning.
      if (final.kind === 'rejected') log.warn(fields, 'gateway rejected the charge request');
      else if (final.kind === 'approved' || final.kind === 'declined')
        log.debug(fields, 'gateway charge finished');
      else log.info(fields, 'gateway charge finished');
      return final;
    },

    async lookup(idempotencyKey, signal) {
      if (!IDEMPOTENCY_KEY.test(idempotencyKey)) {
        return { kind: 'rejected', reason: 'invalid_idempotency_key' };
      }
      const result = await exchange(
        `/v1/charges/${encodeURIComponent(idempotencyKey)}`,
        { method: 'GET' },
        signal,
      );
      const outcome = classify(result, { key: idempotencyKey });
      log.debug(
        { idempotencyKey, outcome: outcome.kind, ...('reason' in outcome ? { reason: outcome.reason } : {}) },
        'gateway lookup finished',
      );
      return outcome;
    },
  };
}
