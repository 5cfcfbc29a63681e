// Cuts one loopback TCP connection off without a word, as a vanished host or a network partition would: its
// packets are dropped both ways (iptables), so neither end sees a FIN or a RST. Needs root and iptables
// (`apt-get install iptables`); the rules are removed at teardown.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { Test } from 'tap';

const run = promisify(execFile);
const BINARY = process.env.IPTABLES_BIN ?? 'iptables';

/** Why a silent cut cannot be made here, or undefined when it can. */
export async function silentCutUnavailable(): Promise<string | undefined> {
  try {
    await run(BINARY, ['-w', '-L', 'INPUT', '-n']);
    return undefined;
  } catch (error) {
    return `iptables is not usable here (${(error as Error).message.split('\n')[0]})`;
  }
}

/**
 * Drops every packet to or from the local TCP port `port` on the loopback interface until `restore()` (or the
 * teardown). Restore as soon as the cut has done its work: once the connection is gone, the port may be reused
 * by another connection, which the rules would cut too.
 */
export async function cutSilently(t: Test, port: number): Promise<{ restore(): Promise<void> }> {
  // Tagged for this `npm test` run, which removes the rules of a test that died (scripts/test-leftovers.mjs).
  const tag = process.env.TEST_NETWORK_CUT_TAG ?? 'recorrencias-test-cut:manual';
  const rules = ['--sport', '--dport'].map((side) => [
    'INPUT',
    '-i',
    'lo',
    '-p',
    'tcp',
    side,
    String(port),
    '-m',
    'comment',
    '--comment',
    tag,
    '-j',
    'DROP',
  ]);
  let restored: Promise<void> | undefined;
  const restore = () =>
    (restored ??= (async () => {
      for (const rule of rules) await run(BINARY, ['-w', '-D', ...rule]).catch(() => undefined);
    })());
  t.teardown(restore);
  for (const rule of rules) await run(BINARY, ['-w', '-A', ...rule]);
  return { restore };
}
