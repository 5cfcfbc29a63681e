// The payment gateway as the charging engine sees it: the request it sends, the four outcomes it can get
// back, and the interface both the HTTP client and test doubles implement. No I/O here.
//
// HTTP contract (the real gateway, and src/gateway/fake-gateway.ts, implement it):
//
//   POST {GATEWAY_URL}/v1/charges
//     Idempotency-Key: <key>            required, 1..255 printable ASCII characters, no spaces
//     Content-Type: application/json
//     Authorization: Bearer <apiKey>    when the gateway is configured with an api key
//     { "amount_cents": int > 0, "currency": "BRL" (3 upper-case letters), "card_token": string,
//       "description": string,
//       "metadata": { "recorrencia_id": string, "ciclo": "YYYY-MM-DD", "tentativa": int, ...string values } }
//
//     200 { "status": "approved", "charge_id": string, "amount_cents", "currency", "idempotency_key" }
//     200 { "status": "declined", "charge_id": string | null, "code": string (ABECS), "reversible": boolean,
//           "message": string, "idempotency_key" }
//     409 { "error": "idempotency_key_reused" }  the key was used before with different parameters
//                                                 (amount_cents, currency, card_token, metadata.recorrencia_id,
//                                                 metadata.ciclo; tentativa and description may differ)
//     400 { "error": "invalid_request", "message" }
//     401 the api key is missing or wrong
//     429, 5xx: transient; nothing can be concluded about whether the charge was executed
//
//     A repeated request with the same key and the same parameters never charges again: it gets the stored
//     first response (same status code and body) with the header `Idempotent-Replayed: true`.
//
//   GET {GATEWAY_URL}/v1/charges/{idempotencyKey}      (the key URL-encoded)
//     200 the stored charge response body (approved or declined), exactly as the charge request got it
//     404 { "error": "not_found" }   the gateway never executed that key
//
//   Keys are kept at least GATEWAY_KEY_RETENTION_HOURS (0: for ever) after their first request: an attempt
//   older than that is never sent or looked up again (KEY_EXPIRED).
//
// How the client maps responses to outcomes: see src/gateway/http-gateway.ts.

/**
 * The reason of a 409: the gateway holds another request under the key. Keys are made of the recurrence, the
 * cycle and the attempt number, so that request may be this very cycle charged before (a restored database)
 * or something else entirely (another environment): only an operator can tell which.
 */
export const KEY_REUSED = 'idempotency_key_reused';

/**
 * The block of an attempt sent before and created longer ago than the gateway keeps its keys
 * (GATEWAY_KEY_RETENTION_HOURS): a gateway that has forgotten the key answers a lookup with 404 and charges a
 * resend as new, whether or not the first request was charged. Only an operator can tell which.
 */
export const KEY_EXPIRED = 'idempotency_key_expired';

export type ChargeRequest = {
  /** Sent as the Idempotency-Key header. Retrying an `unknown` outcome MUST reuse the same key. */
  idempotencyKey: string;
  amountCents: number;
  currency: string;
  cardToken: string;
  description: string;
  metadata: { recorrenciaId: number; ciclo: string; tentativa: number };
};

export type ChargeOutcome =
  /** The card was charged. */
  | { kind: 'approved'; chargeId: string }
  /**
   * The issuer refused. `reversible` is the gateway's word; the engine also checks the code against the
   * ABECS list (`isIrreversibleDecline` in decline-codes.ts) before it ever retries.
   */
  | { kind: 'declined'; chargeId: string | null; code: string; reversible: boolean; message: string }
  /**
   * Ambiguous: timeout, connection reset, 429, 5xx, unreadable body, aborted; also 401/403 (our credentials
   * refused: every request fails alike until an operator fixes them). The charge may or may not have
   * happened. Never a decline: retry (or look up) with the SAME key.
   */
  | { kind: 'unknown'; reason: string }
  /**
   * This request is wrong (400, 409 key reused, 422): permanent, needs an operator. Never a
   * decline, and retrying the same request cannot help. `executed` is false when the gateway refused it
   * before executing anything under its key (400, 422); 409 says the key holds another request. `reason` is
   * the error's code; `message` the gateway's words, with the request's card token taken out.
   */
  | { kind: 'rejected'; reason: string; message?: string; executed: boolean };

export type LookupOutcome = ChargeOutcome | { kind: 'not_found' };

export interface PaymentGateway {
  /**
   * Asks the gateway to execute the charge. Never throws for gateway or network trouble: every failure is
   * an outcome. Safe to call again with the same request (the key makes it idempotent).
   */
  charge(request: ChargeRequest, signal: AbortSignal): Promise<ChargeOutcome>;
  /**
   * What the gateway recorded for the request's key; `not_found` means it never executed it. An approval of
   * another amount or currency is `unknown`, as it would be from `charge`, and so is a refused lookup
   * (400/409/422): only a charge's own refusal says nothing ran under its key. Read-only.
   */
  lookup(request: ChargeRequest, signal: AbortSignal): Promise<LookupOutcome>;
}
