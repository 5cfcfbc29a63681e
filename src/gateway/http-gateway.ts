// The PaymentGateway over HTTP (node:http, connections kept alive). It classifies every response into the four
// outcomes and never turns an ambiguous one into a decline: when in doubt, `unknown`.
import http from 'node:http';
import https from 'node:https';
import type { Logger } from '../log.ts';
import {
  KEY_REUSED,
  type ChargeOutcome,
  type ChargeRequest,
  type LookupOutcome,
  type PaymentGateway,
} from './gateway.ts';
import {
  chargeResponseBodySchema,
  errorBodySchema,
  IDEMPOTENCY_KEY,
  type ChargeRequestBody,
} from './wire.ts';

export type HttpGatewayOptions = { url: string; apiKey?: string; timeoutMs: number; log: Logger };

/** Statuses that mean this request is wrong: retrying the same request cannot help. */
const REJECTED_STATUSES = new Map([
  [400, 'invalid_request'],
  [409, KEY_REUSED],
  [422, 'unprocessable'],
]);
/**
 * The gateway refused our credentials (GATEWAY_API_KEY): every request fails alike until an operator fixes
 * them, so it is not this recurrence's fault (a rejection would put every due recurrence on hold). The outcome
 * stays unknown: the job fails and retries under the same key, and the failed jobs alert the operator.
 */
const CREDENTIAL_STATUSES = new Map([
  [401, 'unauthorized'],
  [403, 'forbidden'],
]);

type Exchange =
  | { status: number; body: unknown; replayed: boolean }
  /** `error`: the network error behind the reason (its code and message), for the log. */
  | { failed: string; error?: string };

/** A response body larger than this is off-contract (and is not read into memory). */
const MAX_BODY_BYTES = 1_048_576;

/** OpenSSL's certificate verification codes and Node's own TLS/SSL error codes. */
const TLS_ERROR =
  /^(ERR_TLS_|ERR_SSL_|CERT_|UNABLE_TO_|DEPTH_ZERO_SELF_SIGNED_CERT$|SELF_SIGNED_CERT_IN_CHAIN$)/;

/** A failed exchange for a network error: the reason the outcome carries, and the error itself for the log. */
function networkFailure(error: unknown): Exchange {
  const { code, message } = (error ?? {}) as { code?: string; message?: string };
  return { failed: networkReason(error), error: `${code ?? 'no code'}: ${message ?? 'no message'}` };
}

function networkReason(error: unknown): string {
  const code = (error as { code?: unknown } | undefined)?.code;
  switch (code) {
    case 'ECONNRESET':
    case 'EPIPE':
      return 'connection_reset';
    case 'ECONNREFUSED':
      return 'connection_refused';
    case 'ETIMEDOUT':
      return 'connect_timeout';
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return 'dns_error';
  }
  // A certificate the worker does not trust fails the handshake, before the charge is sent, and fails every
  // charge the same way: name it, so the operator looks at the certificate rather than at the network.
  if (typeof code === 'string' && TLS_ERROR.test(code)) return 'tls_error';
  return 'network_error';
}

/** Maps a 200 body; anything off-contract is `unknown` (never a decline). */
function fromChargeBody(body: unknown, request: ChargeRequest): ChargeOutcome {
  const parsed = chargeResponseBodySchema.safeParse(body);
  if (!parsed.success) return { kind: 'unknown', reason: 'invalid_body' };
  const charge = parsed.data;
  // A response about another key, or an approval of another amount, is not an answer to our request: not
  // when it answers the charge, and not when a lookup finds it (a resumed attempt would record it as paid).
  if (charge.idempotency_key !== request.idempotencyKey)
    return { kind: 'unknown', reason: 'mismatched_response' };
  if (charge.status === 'approved') {
    if (charge.amount_cents !== request.amountCents || charge.currency !== request.currency) {
      return { kind: 'unknown', reason: 'mismatched_response' };
    }
    return { kind: 'approved', chargeId: charge.charge_id };
  }
  return {
    kind: 'declined',
    chargeId: charge.charge_id,
    code: charge.code,
    reversible: charge.reversible,
    // Like a rejection's: it is stored on the attempt and sent in checkout events, and may quote the request.
    message: withoutToken(charge.message, request.cardToken).slice(0, 200),
  };
}

const CREDENTIALS_REFUSED = 'gateway refused our credentials: check GATEWAY_API_KEY';

const CREDENTIAL_REASONS = new Set(CREDENTIAL_STATUSES.values());

function credentialsRefused(outcome: { kind: string; reason?: string }): boolean {
  return outcome.kind === 'unknown' && CREDENTIAL_REASONS.has(outcome.reason ?? '');
}

function withoutToken(text: string, token: string): string {
  return token.length === 0 ? text : text.replaceAll(token, '[cartao_token]');
}

/**
 * A rejection's code, and the gateway's message without the card token: the message may quote the request,
 * and it goes to logs and to the attempt, where the token never appears in full.
 */
function rejection(status: number, body: unknown, request: ChargeRequest): ChargeOutcome {
  const parsed = errorBodySchema.safeParse(body);
  const reason = parsed.success ? parsed.data.error : (REJECTED_STATUSES.get(status) ?? `http_${status}`);
  const message = parsed.success ? parsed.data.message : undefined;
  return {
    kind: 'rejected',
    reason,
    ...(message === undefined ? {} : { message: withoutToken(message, request.cardToken).slice(0, 200) }),
    // The contract says 409 for a key already used; a gateway (or its proxy) answering that same error code
    // with a 400 or 422 means the same thing: something may have run under the key.
    executed: status === 409 || reason === KEY_REUSED,
  };
}

/**
 * The key's first request is still being processed (Stripe's error code for a request that arrives meanwhile, with 409:
 * `idempotency_key_in_use`): a transient answer about timing, not a key holding another request. Taken as a
 * block, every attempt resent after a timeout in a slow-gateway incident would wait for an operator.
 */
const KEY_IN_USE = 'idempotency_key_in_use';

function classify(exchange: Exchange, request: ChargeRequest): ChargeOutcome | { kind: 'not_found' } {
  if ('failed' in exchange) return { kind: 'unknown', reason: exchange.failed };
  const { status, body } = exchange;
  if (status === 200) return fromChargeBody(body, request);
  if (errorBodySchema.safeParse(body).data?.error === KEY_IN_USE)
    return { kind: 'unknown', reason: 'key_in_use' };
  if (REJECTED_STATUSES.has(status)) return rejection(status, body, request);
  const credentials = CREDENTIAL_STATUSES.get(status);
  if (credentials !== undefined) return { kind: 'unknown', reason: credentials };
  if (status === 429) return { kind: 'unknown', reason: 'rate_limited' };
  // Only the contract's own body means "never executed": a bare 404 may come from a proxy or a wrong URL.
  if (status === 404 && errorBodySchema.safeParse(body).data?.error === 'not_found') {
    return { kind: 'not_found' };
  }
  return { kind: 'unknown', reason: `http_${status}` };
}

/** Reads a response's body (bounded) and settles the exchange with it. */
function readResponse(response: http.IncomingMessage, finish: (result: Exchange) => void): void {
  const chunks: Buffer[] = [];
  let size = 0;
  response.on('data', (chunk: Buffer) => {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) finish({ failed: 'invalid_body' });
    else chunks.push(chunk);
  });
  response.on('error', (error) => finish(networkFailure(error)));
  // Closed before its end: the connection went away mid-body.
  response.on('close', () => {
    if (!response.complete) finish({ failed: 'connection_reset' });
  });
  response.on('end', () => {
    const text = Buffer.concat(chunks).toString('utf8');
    let body: unknown;
    try {
      body = text === '' ? undefined : JSON.parse(text);
    } catch {
      body = undefined;
    }
    const status = response.statusCode ?? 0;
    if (status === 200 && body === undefined) finish({ failed: 'invalid_body' });
    else finish({ status, body, replayed: response.headers['idempotent-replayed'] === 'true' });
  });
}

type Transport = { request: typeof http.request; agent: http.Agent };

/** node:http with a keep-alive agent: a quarter of fetch's CPU per call, which a million calls a morning feel. */
function transportFor(url: URL): Transport {
  if (url.protocol === 'https:')
    return { request: https.request, agent: new https.Agent({ keepAlive: true }) };
  if (url.protocol === 'http:') return { request: http.request, agent: new http.Agent({ keepAlive: true }) };
  throw new Error(`gateway URL must be http or https, not ${url.protocol}`);
}

export function createHttpGateway(options: HttpGatewayOptions): PaymentGateway {
  const target = new URL(options.url);
  const transport = transportFor(target);
  const basePath = target.pathname.replace(/\/+$/, '');
  // Where every request goes; node:http wants an IPv6 host without its brackets.
  const destination = {
    protocol: target.protocol,
    hostname: target.hostname.replace(/^\[(.*)\]$/, '$1'),
    port: target.port,
  };
  const { log, timeoutMs } = options;

  /**
   * One bounded request/response; the timeout covers reading the body too. A redirect is answered as its own
   * status (never followed: following it could turn the charge into a GET somewhere else). A request that a
   * kept-alive connection drops before any response (the gateway closed it while idle) is sent once more on a
   * new connection: every request carries its idempotency key, so a repeat cannot charge twice.
   */
  function exchange(
    path: string,
    request: { method: 'GET' | 'POST'; headers?: Record<string, string>; body?: string },
    signal: AbortSignal,
  ): Promise<Exchange> {
    if (signal.aborted) return Promise.resolve({ failed: 'aborted' });
    const headers: Record<string, string | number> = { ...request.headers };
    if (options.apiKey !== undefined) headers.authorization = `Bearer ${options.apiKey}`;
    if (request.body !== undefined) headers['content-length'] = Buffer.byteLength(request.body);
    return new Promise((resolve) => {
      let outgoing: http.ClientRequest | undefined;
      let settled = false;
      const finish = (result: Exchange) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        if (!('status' in result)) outgoing?.destroy();
        resolve(result);
      };
      const timer = setTimeout(() => finish({ failed: 'timeout' }), timeoutMs);
      const onAbort = () => finish({ failed: 'aborted' });
      signal.addEventListener('abort', onAbort, { once: true });

      const send = (agent: http.Agent | false) => {
        const sent = transport.request({
          ...destination,
          path: `${basePath}${path}`,
          method: request.method,
          headers,
          agent,
        });
        outgoing = sent;
        let answered = false;
        sent.on('error', (error: NodeJS.ErrnoException) => {
          const stale =
            sent.reusedSocket && !answered && (error.code === 'ECONNRESET' || error.code === 'EPIPE');
          if (stale && agent !== false && !settled) send(false);
          else finish(networkFailure(error));
        });
        sent.on('response', (response) => {
          answered = true;
          readResponse(response, finish);
        });
        sent.end(request.body);
      };
      send(transport.agent);
    });
  }

  return {
    async charge(request, signal) {
      const context = {
        idempotencyKey: request.idempotencyKey,
        recorrenciaId: request.metadata.recorrenciaId,
        ciclo: request.metadata.ciclo,
        tentativa: request.metadata.tentativa,
      };
      // node:http would throw on such a header before sending anything; say so instead of "unknown".
      if (!IDEMPOTENCY_KEY.test(request.idempotencyKey)) {
        log.warn(context, 'gateway charge not sent: invalid idempotency key');
        return { kind: 'rejected', reason: 'invalid_idempotency_key', executed: false };
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
      const outcome = classify(result, request);
      // A POST never answers 404 not_found by contract; if something does, nothing is known.
      const final: ChargeOutcome =
        outcome.kind === 'not_found' ? { kind: 'unknown', reason: 'http_404' } : outcome;
      const fields = {
        ...context,
        outcome: final.kind,
        ...('code' in final ? { code: final.code, reversible: final.reversible } : {}),
        ...('reason' in final ? { reason: final.reason } : {}),
        ...(final.kind === 'rejected' ? { message: final.message } : {}),
        replayed: 'replayed' in result ? result.replayed : undefined,
        networkError: 'error' in result ? result.error : undefined,
        ms: Math.round(performance.now() - started),
      };
      // Approvals and declines are recorded in the database, and the charge path logs each decline once with
      // its decision; logging them here too would cost another write per charge at a million a morning.
      if (credentialsRefused(final)) log.error(fields, CREDENTIALS_REFUSED);
      else if (final.kind === 'rejected') log.warn(fields, 'gateway rejected the charge request');
      else if (final.kind === 'approved' || final.kind === 'declined')
        log.debug(fields, 'gateway charge finished');
      else log.info(fields, 'gateway charge finished');
      return final;
    },

    async lookup(request, signal) {
      const { idempotencyKey } = request;
      if (!IDEMPOTENCY_KEY.test(idempotencyKey)) {
        return { kind: 'rejected', reason: 'invalid_idempotency_key', executed: false };
      }
      const result = await exchange(
        `/v1/charges/${encodeURIComponent(idempotencyKey)}`,
        { method: 'GET' },
        signal,
      );
      const classified = classify(result, request);
      // A refused lookup (400/409/422, a proxy's maybe) says nothing about whether the key's earlier POST ran:
      // unknown, never "nothing ran", which would end an attempt that may have charged.
      const lookupRefused = classified.kind === 'rejected';
      const outcome: LookupOutcome = lookupRefused
        ? { kind: 'unknown', reason: `lookup_${classified.reason}` }
        : classified;
      const [level, message] = credentialsRefused(outcome)
        ? (['error', CREDENTIALS_REFUSED] as const)
        : lookupRefused
          ? (['warn', 'gateway refused the lookup: outcome unknown'] as const)
          : (['debug', 'gateway lookup finished'] as const);
      log[level](
        {
          idempotencyKey,
          outcome: outcome.kind,
          ...('reason' in outcome ? { reason: outcome.reason } : {}),
          networkError: 'error' in result ? result.error : undefined,
        },
        message,
      );
      return outcome;
    },
  };
}
