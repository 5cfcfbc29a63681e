// A TCP proxy in front of Postgres that kills one connection at the worst moment for a pool: it forwards the
// server's first ReadyForQuery and, in the same write, a FATAL error, then closes the connection. The client
// learns that its connection is open and that it is gone in one read, as when Postgres shuts down just as it
// accepts a connection.
import { createServer, connect, type AddressInfo, type Socket } from 'node:net';
import type { Test } from 'tap';

/** ErrorResponse: severity FATAL, SQLSTATE 57P01 (admin shutdown), as Postgres sends at a fast shutdown. */
function fatalMessage(): Buffer {
  const fields = Buffer.from(
    'SFATAL\0VFATAL\0C57P01\0Mterminating connection due to administrator command\0\0',
  );
  const header = Buffer.alloc(5);
  header.write('E', 0);
  header.writeInt32BE(fields.length + 4, 1);
  return Buffer.concat([header, fields]);
}

/**
 * Starts the proxy towards the Postgres of `databaseUrl`; the `victim`-th connection it accepts (from 1) is
 * killed right after it is ready, the others are passed through. Returns the URL that goes through it.
 */
export async function fatalAfterReadyProxy(
  t: Test,
  databaseUrl: string,
  victim: number,
): Promise<{ url: string; killed: () => number }> {
  const target = new URL(databaseUrl);
  let accepted = 0;
  let killed = 0;
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    accepted += 1;
    const upstream = connect(Number(target.port || 5432), target.hostname);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('error', () => undefined);
      socket.on('close', () => sockets.delete(socket));
    }
    client.pipe(upstream);
    if (accepted !== victim) {
      upstream.pipe(client);
      return;
    }
    // Forward whole messages up to and including the first ReadyForQuery ('Z'), then the FATAL error.
    let pending = Buffer.alloc(0);
    upstream.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      let offset = 0;
      while (pending.length - offset >= 5) {
        const type = String.fromCharCode(pending[offset] ?? 0);
        const length = pending.readInt32BE(offset + 1);
        if (pending.length - offset < 1 + length) break;
        offset += 1 + length;
        if (type === 'Z') {
          killed += 1;
          client.end(Buffer.concat([pending.subarray(0, offset), fatalMessage()]));
          upstream.destroy();
          return;
        }
      }
      client.write(pending.subarray(0, offset));
      pending = pending.subarray(offset);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const url = new URL(databaseUrl);
  url.hostname = '127.0.0.1';
  url.port = String((server.address() as AddressInfo).port);
  return { url: url.toString(), killed: () => killed };
}
