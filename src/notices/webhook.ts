// Delivers one outbox message (a seller notice or a checkout event) to its configured webhook: a JSON POST
// signed with HMAC-SHA256 over "<timestamp>.<body>"
// (header X-Recorrencias-Assinatura: t=<unix seconds>,v1=<hex>), so the receiver can verify it came from us
// and is fresh. The event id header lets the receiver drop a redelivery.
import { createHmac, timingSafeEqual } from 'node:crypto';

export const SIGNATURE_HEADER = 'x-recorrencias-assinatura';
export const EVENT_ID_HEADER = 'x-recorrencias-evento-id';
export const EVENT_TYPE_HEADER = 'x-recorrencias-evento';

export function signBody(secret: string, timestamp: number, body: string): string {
  const digest = createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex');
  return `t=${timestamp},v1=${digest}`;
}

/** For receivers (and tests): checks the signature and that it is at most `toleranceSeconds` old. */
export function verifySignature(
  secret: string,
  header: string,
  body: string,
  nowSeconds: number,
  toleranceSeconds = 300,
): boolean {
  const parts = Object.fromEntries(header.split(',').map((part) => part.split('=') as [string, string]));
  const timestamp = Number(parts.t);
  if (
    !Number.isInteger(timestamp) ||
    Math.abs(nowSeconds - timestamp) > toleranceSeconds ||
    parts.v1 === undefined
  )
    return false;
  const expected = Buffer.from(signBody(secret, timestamp, body).split('v1=')[1] ?? '', 'hex');
  const given = Buffer.from(parts.v1, 'hex');
  return expected.length === given.length && timingSafeEqual(expected, given);
}

export class WebhookError extends Error {}

/** fetch says only "fetch failed": the reason (refused, DNS, TLS) is in its cause, which the row must show. */
function unreachable(error: unknown): string {
  const { message, cause } = error as Error & { cause?: { code?: unknown; message?: unknown } };
  const reason = [cause?.code, cause?.message].filter((part) => typeof part === 'string' && part !== '');
  return `webhook unreachable: ${message}${reason.length > 0 ? ` (${reason.join(': ')})` : ''}`;
}

export async function postSignedEvent(
  target: { url: string; secret: string; timeoutMs: number },
  event: { id: string; type: string; payload: object },
  signal?: AbortSignal,
): Promise<void> {
  const body = JSON.stringify(event.payload);
  const timestamp = Math.floor(Date.now() / 1000);
  const timeout = AbortSignal.timeout(target.timeoutMs);
  let response: Response;
  try {
    response = await fetch(target.url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        [SIGNATURE_HEADER]: signBody(target.secret, timestamp, body),
        [EVENT_ID_HEADER]: event.id,
        [EVENT_TYPE_HEADER]: event.type,
      },
      body,
      // A redirect is not a delivery: followed, a 301/302 becomes a GET without the body (a login page's 200
      // would mark the event sent), and a 307/308 sends the signed body wherever Location says.
      redirect: 'manual',
      signal: signal === undefined ? timeout : AbortSignal.any([signal, timeout]),
    });
  } catch (error) {
    throw new WebhookError(unreachable(error), { cause: error });
  }
  await response.body?.cancel();
  if (!response.ok) throw new WebhookError(`webhook answered HTTP ${response.status}`);
}
