// `npm start`: the whole service on this machine in one command. Installs the dependencies when they are
// missing (this script may therefore run on an older system Node), builds, then runs `dist/main.js dev` on
// the Node 24 that npm installed into node_modules. Signals are forwarded once, so a single Ctrl-C stops
// everything, embedded PostgreSQL included.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

const root = fileURLToPath(new URL('..', import.meta.url));
const node24 = join(root, 'node_modules', '.bin', 'node');

function run(command, args) {
  const result = spawnSync(command, args, { cwd: root, stdio: 'inherit' });
  if (result.status !== 0) process.exit(result.status ?? 1);
}

if (!existsSync(node24)) {
  console.log(
    'Dependencies are not installed yet: running npm install (it also installs Node 24 into node_modules)...',
  );
  run('npm', ['install', '--no-audit', '--no-fund']);
}
run(node24, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json']);

const child = spawn(node24, [join(root, 'dist', 'main.js'), 'dev', ...process.argv.slice(2)], {
  cwd: root,
  stdio: 'inherit',
});
let lastForward = 0;
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    // A terminal Ctrl-C reaches npm, this script and the service at once, and npm forwards it again: pass
    // on one signal per second, so the service sees a second signal only when someone really sends one.
    if (Date.now() - lastForward < 1_000) return;
    lastForward = Date.now();
    child.kill(signal);
  });
}
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 128 : 1)));
