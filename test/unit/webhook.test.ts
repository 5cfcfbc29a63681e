// A delivery to a webhook that cannot be reached says why in its error (what the outbox row's ultimo_erro keeps),
// and a redirect is a failed delivery, never a sent one.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
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

t.test(
  'a redirect is not a delivery: the event stays undelivered, whatever the target answers',
  async (t) => {
    const requests: string[] = [];
    // POST /eventos-<status> answers that redirect to /login, a page that answers 200 to anything.
    const server = createServer((request, response) => {
      requests.push(`${request.method ?? ''} ${request.url ?? ''}`);
      const redirect = /^\/eventos-(\d{3})$/.exec(request.url ?? '');
      if (redirect?.[1] !== undefined) response.writeHead(Number(redirect[1]), { location: '/login' }).end();
      else response.writeHead(200, { 'content-type': 'text/html' }).end('<html>login</html>');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    t.teardown(() => server.close());
    const { port } = server.address() as AddressInfo;
    const statuses = [301, 302, 307, 308];
    for (const status of statuses) {
      const error: unknown = await postSignedEvent(
        {
          url: `http://127.0.0.1:${port}/eventos-${status}`,
          secret: 'segredo-de-teste-0123456789',
          timeoutMs: 2_000,
        },
        { id: 'evento-1', type: 'cobranca_aprovada', payload: {} },
      ).then(
        () => null,
        (rejection: unknown) => rejection,
      );
      t.ok(error instanceof WebhookError, `HTTP ${status}: a failed delivery (retried), never a sent one`);
      t.equal((error as Error).message, `webhook answered HTTP ${status}`);
    }
    t.same(
      requests,
      statuses.map((status) => `POST /eventos-${status}`),
      'the redirect was never followed',
    );
  },
);
