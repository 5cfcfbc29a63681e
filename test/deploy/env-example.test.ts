// .env.example is the operators' list of settings: it must name every variable the service reads, nothing
// it does not, and show the real defaults. Parsed with Node's own .env parser (the one `loadEnvFile` uses).
import { readFileSync } from 'node:fs';
import { parseEnv } from 'node:util';
import t from 'tap';
import { ConfigError, ENVIRONMENT_VARIABLES, loadConfig, requireFor } from '../../src/config.ts';

const text = readFileSync(new URL('../../.env.example', import.meta.url), 'utf8');
const lines = text.split('\n');

/** Read outside the service's schema: by `npm start` (EMBEDDED_PG_DIR) and the fake-gateway command. */
const DEVELOPMENT_ONLY = [
  'EMBEDDED_PG_DIR',
  'FAKE_GATEWAY_PORT',
  'FAKE_GATEWAY_HOST',
  'FAKE_GATEWAY_LATENCY_MS',
  'FAKE_GATEWAY_DECLINE_RATE',
  'FAKE_GATEWAY_IRREVERSIBLE_SHARE',
  'FAKE_GATEWAY_SEED',
  'FAKE_GATEWAY_LEDGER_FILE',
];

/** Required by production roles, so left uncommented (and empty: `npm start` must still work as copied). */
const REQUIRED_IN_PRODUCTION = ['DATABASE_URL', 'GATEWAY_URL', 'ADMIN_TOKENS'];

const ACTIVE = /^([A-Za-z_][A-Za-z0-9_]*)=/;
const COMMENTED = /^#\s*([A-Za-z_][A-Za-z0-9_]*)=/;

type Assignment = { name: string; line: number; commented: boolean };
const assignments: Assignment[] = lines.flatMap((line, index): Assignment[] => {
  const active = ACTIVE.exec(line);
  if (active?.[1] !== undefined) return [{ name: active[1], line: index, commented: false }];
  const commented = COMMENTED.exec(line);
  if (commented?.[1] !== undefined) return [{ name: commented[1], line: index, commented: true }];
  return [];
});

/** The uncommented values, exactly as `npm start` / `node dist/main.js` would load them from .env. */
const activeValues = parseEnv(text);
/** The commented `# NAME=value` lines read as if uncommented: the documented defaults. */
const documentedValues = parseEnv(
  lines
    .filter((line) => COMMENTED.test(line))
    .map((line) => line.replace(/^#\s*/, ''))
    .join('\n'),
);

function withoutDevelopmentOnly(values: NodeJS.Dict<string>): NodeJS.Dict<string> {
  return Object.fromEntries(Object.entries(values).filter(([name]) => !DEVELOPMENT_ONLY.includes(name)));
}

t.test('every variable the service reads is documented, once', async (t) => {
  const names = assignments.map((a) => a.name);
  for (const name of ENVIRONMENT_VARIABLES) t.ok(names.includes(name), `${name}= appears in .env.example`);
  const repeated = names.filter((name, index) => names.indexOf(name) !== index);
  t.same(repeated, [], 'no variable is listed twice');
});

t.test('every assignment is a variable of the service or an allowed development-only one', async (t) => {
  const unknown = assignments
    .map((a) => a.name)
    .filter((name) => !ENVIRONMENT_VARIABLES.includes(name) && !DEVELOPMENT_ONLY.includes(name));
  t.same(unknown, [], 'unknown names in .env.example');
  for (const name of DEVELOPMENT_ONLY) {
    t.ok(
      assignments.some((a) => a.name === name),
      `${name} is documented (keep the allow-list in step with the file)`,
    );
    t.notOk(ENVIRONMENT_VARIABLES.includes(name), `${name} is not a variable of the service schema`);
  }
});

t.test('each variable has a description right above it', async (t) => {
  for (const { name, line } of assignments) {
    const above = lines[line - 1] ?? '';
    t.ok(above.startsWith('#') && !COMMENTED.test(above) && !/^#\s*-+$/.test(above), `${name} is described`);
  }
});

t.test('only the variables production requires are uncommented, and they are empty', async (t) => {
  const uncommented = assignments.filter((a) => !a.commented).map((a) => a.name);
  t.same(uncommented.sort(), [...REQUIRED_IN_PRODUCTION].sort());
  for (const name of REQUIRED_IN_PRODUCTION) t.equal(activeValues[name], '', `${name} is empty`);
});

t.test('loadConfig accepts the uncommented values', async (t) => {
  t.doesNotThrow(() => loadConfig(activeValues));
  t.doesNotThrow(() => loadConfig(activeValues, { development: true }));
});

t.test('a production role started with the file as copied stops and names what is missing', async (t) => {
  const config = loadConfig(activeValues);
  t.throws(() => requireFor(config, ['database', 'gateway', 'adminToken']), ConfigError);
  try {
    requireFor(config, ['database', 'gateway', 'adminToken']);
  } catch (error) {
    const problems = (error as ConfigError).problems.join('\n');
    for (const name of REQUIRED_IN_PRODUCTION) t.match(problems, name);
  }
});

t.test('the commented values are the real defaults', async (t) => {
  const documented = withoutDevelopmentOnly(documentedValues);
  t.same(Object.keys(documented).length, ENVIRONMENT_VARIABLES.length - REQUIRED_IN_PRODUCTION.length);
  t.same(loadConfig(documented), loadConfig({}));
});
