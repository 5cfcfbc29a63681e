// A process that crashes (an exception or a rejection nothing handled) leaves one structured fatal line,
// redacted like the others, and exits 1 as Node would.
import { spawnSync } from 'node:child_process';
import t from 'tap';

const LIB = new URL('../../dist/', import.meta.url).href;

function crashWith(code: string) {
  const script = `
    import { createLogger } from '${LIB}log.js';
    import { logCrashes } from '${LIB}lifecycle.js';
    logCrashes(createLogger({ level: 'info', format: 'json', role: 'test' }));
    ${code}`;
  return spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
}

for (const [what, code] of [
  ['unhandled promise rejection', `Promise.reject(new Error('boom'));`],
  ['uncaught exception', `setTimeout(() => { throw new Error('boom'); }, 0);`],
] as const) {
  t.test(`${what}: one fatal JSON line, exit 1`, async (t) => {
    const run = crashWith(code);
    t.equal(run.status, 1);
    const lines = run.stdout.trim().split('\n');
    t.equal(lines.length, 1, run.stdout + run.stderr);
    t.match(JSON.parse(lines[0] ?? '{}'), {
      level: 60,
      role: 'test',
      msg: `${what}: the process exits`,
      err: { message: 'boom' },
    });
  });
}
