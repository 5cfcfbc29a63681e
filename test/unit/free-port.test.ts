// freePort: ports for the servers the tests, the benchmark and the fault suite start must be listenable and
// outside the kernel's ephemeral range, where an outgoing connection could take them first.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import t from 'tap';
import { freePort } from '../../src/dev/embedded-postgres.ts';

t.test('freePort gives listenable ports below the ephemeral range', async (t) => {
  const [start] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/);
  const ports = await Promise.all(Array.from({ length: 20 }, () => freePort()));
  for (const port of ports) t.ok(port < Number(start), `${port} is below ${start}`);
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(ports[0], '127.0.0.1', resolve);
  });
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  t.pass(`a server listens on ${ports[0]}`);
});
