// docker-compose.yml checked offline (no Docker engine here): dclint validates it against the compose
// schema and our lint rules, then the parsed file is held to the deployment's promises.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { parse } from 'yaml';
import { loadConfig } from '../../src/config.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const COMPOSE_FILE = join(ROOT, 'docker-compose.yml');
const DCLINT = join(ROOT, 'node_modules/dclint/bin/dclint.cjs');

/** The roles the compose file runs, each as `node dist/main.js <role>`. */
const ROLES = ['migrate', 'worker', 'scheduler', 'admin', 'fake-gateway'];

type Service = {
  image?: string;
  command?: unknown;
  profiles?: string[];
  restart?: string;
  environment?: Record<string, unknown>;
  depends_on?: Record<string, { condition?: string }>;
  volumes?: string[];
  ports?: string[];
  healthcheck?: { test?: unknown };
  stop_grace_period?: string;
  deploy?: { replicas?: number; resources?: { limits?: { memory?: string; cpus?: string | number } } };
};
type ComposeFile = { services: Record<string, Service>; volumes?: Record<string, unknown> } & Record<
  string,
  unknown
>;

const text = readFileSync(COMPOSE_FILE, 'utf8');
// `merge: true` resolves the `<<: *anchor` keys the way compose does.
const compose = parse(text, { merge: true }) as ComposeFile;
const services = compose.services;

function service(name: string): Service {
  const found = services[name];
  if (found === undefined) throw new Error(`docker-compose.yml has no service "${name}"`);
  return found;
}

function dclint(args: string[]): { status: number | null; output: string } {
  const result = spawnSync(process.execPath, [DCLINT, ...args, '--no-color'], {
    cwd: ROOT,
    encoding: 'utf8',
  });
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

/** Compose byte values ("512M", "1g", "256mb") in bytes. */
function bytes(value: string | undefined): number {
  const match = /^(\d+(?:\.\d+)?)\s*([bkmg]?)b?$/i.exec(value ?? '');
  if (match === null) return Number.NaN;
  const power = ['b', 'k', 'm', 'g'].indexOf((match[2] ?? '').toLowerCase() || 'b');
  return Number(match[1]) * 1024 ** power;
}

/** Compose durations ("330s", "5m30s", "1h") in seconds. */
function seconds(value: string | undefined): number {
  if (value === undefined || !/^(\d+(\.\d+)?(h|m|s|ms|us))+$/.test(value)) return Number.NaN;
  const unit: Record<string, number> = { h: 3600, m: 60, s: 1, ms: 0.001, us: 0.000001 };
  let total = 0;
  for (const [, amount, , suffix] of value.matchAll(/(\d+(\.\d+)?)(h|ms|us|m|s)/g)) {
    total += Number(amount) * (unit[suffix ?? ''] ?? Number.NaN);
  }
  return total;
}

/** The commands `node dist/main.js help` lists (two-space indent; descriptions wrap at a deeper one). */
function cliCommands(): string[] {
  const help = spawnSync(process.execPath, [join(ROOT, 'src/main.ts'), 'help'], {
    cwd: ROOT,
    encoding: 'utf8',
  });
  if (help.status !== 0) throw new Error(`main.ts help failed: ${help.stderr}`);
  return [...help.stdout.matchAll(/^ {2}([a-z][a-z-]*)(?=\s|$)/gm)].map((match) => match[1] ?? '');
}

t.test('dclint accepts the file with no error and no warning', async (t) => {
  const result = dclint([COMPOSE_FILE, '--max-warnings', '0']);
  t.equal(result.status, 0, result.output);
});

t.test('dclint catches a key compose does not know (the check above can fail)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'recorrencias-compose-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const broken = join(dir, 'docker-compose.yml');
  writeFileSync(
    broken,
    text.replace("    command: ['worker']\n", "    command: ['worker']\n    replica: 2\n"),
  );
  const result = dclint([broken, '--config', join(ROOT, '.dclintrc'), '--max-warnings', '0']);
  t.not(result.status, 0, 'dclint must reject the broken copy');
  t.match(result.output, /instancePath="\/services\/worker".*additional properties.*invalid-schema/s);
});

t.test(
  'no top-level version or name key (compose spec; Debian docker-compose 1.29 rejects name)',
  async (t) => {
    t.notOk('version' in compose);
    t.notOk('name' in compose);
  },
);

t.test('each role runs as `node dist/main.js <role>` with the exact names the CLI accepts', async (t) => {
  const commands = Object.entries(services)
    .filter(([name]) => name !== 'postgres')
    .map(([name, s]) => [name, s.command]);
  t.same(Object.fromEntries(commands), Object.fromEntries(ROLES.map((role) => [role, [role]])));
  const accepted = cliCommands();
  for (const role of ROLES)
    t.ok(accepted.includes(role), `the CLI lists "${role}" (it lists ${accepted.join(', ')})`);
});

t.test('two workers and two schedulers run at once', async (t) => {
  t.equal(service('worker').deploy?.replicas, 2);
  t.equal(service('scheduler').deploy?.replicas, 2);
});

t.test('resource limits: worker 512 MB / 0.5 CPU, scheduler 256 MB / 0.25 CPU, admin modest', async (t) => {
  const limits = (name: string) => service(name).deploy?.resources?.limits ?? {};
  t.equal(bytes(limits('worker').memory), 512 * 1024 ** 2);
  t.equal(Number(limits('worker').cpus), 0.5);
  t.equal(bytes(limits('scheduler').memory), 256 * 1024 ** 2);
  t.equal(Number(limits('scheduler').cpus), 0.25);
  t.ok(bytes(limits('admin').memory) <= 512 * 1024 ** 2, 'admin memory limit set, at most 512 MB');
  t.ok(Number(limits('admin').cpus) <= 0.5, 'admin cpu limit set, at most 0.5');
});

t.test('a stopping worker gets at least the task hard limit to finish its jobs', async (t) => {
  const hardLimit = loadConfig({}).tasks.hardLimitSeconds;
  t.equal(hardLimit, 300);
  t.ok(seconds(service('worker').stop_grace_period) >= hardLimit, 'worker stop_grace_period >= 300 s');
  for (const name of ['scheduler', 'admin', 'postgres']) {
    t.ok(seconds(service(name).stop_grace_period) >= 30, `${name} stop_grace_period >= 30 s`);
  }
});

t.test('postgres: a supported version, a pg_isready health check and a named volume', async (t) => {
  const postgres = service('postgres');
  t.match(postgres.image, /^postgres:(15|16|17|18)([.-]|$)/);
  t.match(JSON.stringify(postgres.healthcheck?.test), /pg_isready/);
  const dataVolume = (postgres.volumes ?? []).find((volume) => volume.endsWith(':/var/lib/postgresql/data'));
  const volumeName = dataVolume?.split(':')[0] ?? '';
  t.ok(volumeName !== '' && compose.volumes !== undefined && volumeName in compose.volumes, 'named volume');
});

t.test('migrate runs once after postgres is healthy; the roles wait for it to succeed', async (t) => {
  const migrate = service('migrate');
  t.equal(migrate.restart, 'no');
  t.equal(migrate.depends_on?.postgres?.condition, 'service_healthy');
  for (const name of ['worker', 'scheduler', 'admin']) {
    t.equal(service(name).depends_on?.migrate?.condition, 'service_completed_successfully', name);
    t.equal(service(name).restart, 'unless-stopped', `${name} restarts`);
  }
});

t.test('every database role shares one DATABASE_URL pointing at the postgres service', async (t) => {
  const urls = ['migrate', 'worker', 'scheduler', 'admin'].map(
    (name) => service(name).environment?.DATABASE_URL,
  );
  t.match(urls[0], /^postgres:\/\/[^@]+@postgres:5432\/\w+$/);
  t.same(new Set(urls).size, 1);
});

t.test('GATEWAY_URL and ADMIN_TOKENS are required from the operator, never defaulted', async (t) => {
  t.match(service('worker').environment?.GATEWAY_URL, /^\$\{GATEWAY_URL:\?[^}]+\}$/);
  t.match(service('admin').environment?.ADMIN_TOKENS, /^\$\{ADMIN_TOKENS:\?[^}]+\}$/);
  // Wherever else they appear, they are required too (no `:-default` anywhere in the file).
  t.notMatch(text, /\$\{(GATEWAY_URL|ADMIN_TOKENS|ADMIN_TOKEN|DATABASE_URL)(:?[-=+])/);
  for (const [name, s] of Object.entries(services)) {
    for (const variable of ['GATEWAY_URL', 'ADMIN_TOKENS']) {
      const value = s.environment?.[variable];
      if (value !== undefined) t.match(value, new RegExp(`^\\$\\{${variable}:\\?`), `${name} ${variable}`);
    }
  }
});

t.test('the admin port is published and the fake gateway only runs in the demo profile', async (t) => {
  t.ok(
    (service('admin').ports ?? []).some((port) => /(^|:)8080:8080$/.test(port)),
    'admin publishes 8080',
  );
  t.same(service('fake-gateway').profiles, ['demo']);
  t.ok(
    (service('fake-gateway').ports ?? []).some((port) => /(^|:)8090:8090$/.test(port)),
    'fake-gateway publishes 8090',
  );
  t.equal(service('fake-gateway').environment?.FAKE_GATEWAY_HOST, '0.0.0.0', 'reachable from the workers');
  for (const name of ['postgres', 'migrate', 'worker', 'scheduler', 'admin']) {
    t.equal(service(name).profiles, undefined, `${name} starts without a profile`);
  }
  t.match(text.split('\n').slice(0, 20).join('\n'), /--profile demo/, 'the header explains the demo');
});
