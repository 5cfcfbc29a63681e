// The HTTP client over https, as against a real gateway: the fake gateway behind a TLS terminator with a
// certificate made for the test. Connections are kept alive (one handshake for many charges), and a certificate
// the worker does not trust sends nothing and is named in the outcome.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import t, { type Test } from 'tap';
import { startFakeGateway, type FakeGateway } from '../../src/gateway/fake-gateway.ts';
import type { ChargeRequest } from '../../src/gateway/gateway.ts';
import { createHttpGateway } from '../../src/gateway/http-gateway.ts';
import { createLogger } from '../../src/log.ts';

const silent = createLogger({ level: 'silent', format: 'json', role: 'test' });
const never = new AbortController().signal;

/** A self-signed certificate for 127.0.0.1 (OpenSSL's command line; Node cannot issue certificates). */
function selfSigned(t: Test): { key: string; cert: string } {
  const dir = mkdtempSync(path.join(tmpdir(), 'recorrencias-tls-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const [key, cert] = [path.join(dir, 'key.pem'), path.join(dir, 'cert.pem')];
  execFileSync(
    'openssl',
    // prettier-ignore
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
      '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert],
    { stdio: 'ignore' },
  );
  return { key: readFileSync(key, 'utf8'), cert: readFileSync(cert, 'utf8') };
}

function chargeRequest(key: string): ChargeRequest {
  return {
    idempotencyKey: key,
    amountCents: 4_990,
    currency: 'BRL',
    cardToken: 'tok_aprova_1',
    description: 'Plano mensal',
    metadata: { recorrenciaId: 42, ciclo: '2025-03-10', tentativa: 1 },
  };
}

/** TLS in front of the fake gateway: decrypts and passes the bytes through; counts TLS connections. */
async function tlsInFront(
  t: Test,
  fake: FakeGateway,
  pem: { key: string; cert: string },
): Promise<{ url: string; connections: () => number }> {
  let connections = 0;
  const open = new Set<net.Socket>();
  const server = tls.createServer(pem, (secure) => {
    connections += 1;
    open.add(secure);
    const plain = net.connect(fake.port, '127.0.0.1');
    secure.pipe(plain).pipe(secure);
    secure.on('error', () => plain.destroy());
    plain.on('error', () => secure.destroy());
    secure.on('close', () => {
      open.delete(secure);
      plain.destroy();
    });
  });
  // A refused handshake surfaces here as well as in the client.
  server.on('tlsClientError', () => undefined);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        // The client keeps its connection alive: close it rather than wait for it to idle out.
        for (const socket of open) socket.destroy();
        server.close(() => resolve());
      }),
  );
  return {
    url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`,
    connections: () => connections,
  };
}

t.test('charges over https on one kept-alive connection once the certificate is trusted', async (t) => {
  const fake = await startFakeGateway();
  t.teardown(() => fake.close());
  const trusted = selfSigned(t);
  const front = await tlsInFront(t, fake, trusted);
  const gateway = createHttpGateway({ url: front.url, timeoutMs: 2_000, log: silent });

  t.same(await gateway.charge(chargeRequest('antes-da-confianca'), never), {
    kind: 'unknown',
    reason: 'tls_error',
  });
  t.equal(fake.ledger().length, 0, 'an untrusted certificate sends no charge');

  tls.setDefaultCACertificates([...tls.getCACertificates('default'), trusted.cert]);
  const connectionsBefore = front.connections();
  const first = await gateway.charge(chargeRequest('https-1'), never);
  const second = await gateway.charge(chargeRequest('https-2'), never);
  t.match(first, { kind: 'approved' });
  t.match(second, { kind: 'approved' });
  t.same(await gateway.lookup(chargeRequest('https-1'), never), first, 'lookup over https finds the charge');
  t.same(
    fake.ledger().map((entry) => entry.key),
    ['https-1', 'https-2'],
  );
  t.equal(front.connections() - connectionsBefore, 1, 'three calls, one TLS handshake');
});
