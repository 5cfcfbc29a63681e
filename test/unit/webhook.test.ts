// A delivery to a webhook that cannot be reached says why in its error (what the outbox row's ultimo_erro keeps).
import t from 'tap';
import { freePort } from '../../src/dev/embedded-postgres.ts';
import { postSignedEvent, WebhookError } from '../../src/notices/webhook.ts';

t.test('an unreachable webhook: the error names the network reason, not only "fetch failed"', async (t) => {
  const url = `http://127.0.0.1:${await freePort()}/eventos`;
  const sending = postSignedEvent(
    { url, secret: 'segredo-de-teste-0123456789', timeoutMs: 2_000 },
    { id: 'evento-1', type: 'cobranca_aprovada', payload: {} },
  );
  const error: unknown = await sending.then(
    () => null,
    (rejection: unknown) => rejection,
  );
  t.ok(error instanceof WebhookError, 'a WebhookError (the delivery is retried)');
  t.match(
    (error as Error).message,
    /^webhook unreachable: fetch failed \(ECONNREFUSED: connect ECONNREFUSED/,
  );
});
