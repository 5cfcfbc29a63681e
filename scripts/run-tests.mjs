// `npm test` (scripts/run-tests.mjs): typecheck, build, lint and format checks, then the whole tap suite against a real PostgreSQL
// (TEST_DATABASE_URL, else 127.0.0.1:5432 when it answers, else an embedded one started here). Whatever
// fails, the last line reads `N passed, N failed` (`, N skipped` when any were skipped); each check counts
// as one. With CI=true a skipped test fails the run.
//
// Usage: npm test [-- [--no-checks] [tap options and test files]]
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { killProcessGroup, networkCutTag, removeNetworkCuts } from './test-leftovers.mjs';

if (Number(process.versions.node.split('.')[0]) < 24) {
  console.error(
    `npm test needs Node 24 (found ${process.version}): run \`npm ci\` first, which installs it into node_modules.`,
  );
  console.log('0 passed, 1 failed');
  process.exit(1);
}

const { Parser } = await import('tap-parser');
const pg = (await import('pg')).default;

const args = process.argv.slice(2);
const runChecks = !args.includes('--no-checks');
const tapArgs = args.filter((arg) => arg !== '--no-checks');
const isCi = process.env.CI === 'true' || process.env.CI === '1';
const runId = `${process.pid}_${randomBytes(3).toString('hex')}`;
const prefix = `rt_${runId}_`;

const counts = { passed: 0, failed: 0, skipped: 0 };
const failures = [];

function check(name, command, commandArgs) {
  const started = Date.now();
  const result = spawnSync(command, commandArgs, { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
  const ok = result.status === 0;
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  console.log(`${ok ? 'ok' : 'not ok'} - ${name} (${seconds}s)`);
  if (!ok) {
    process.stdout.write(
      `${result.stdout}${result.stderr}`
        .split('\n')
        .map((line) => `    ${line}`)
        .join('\n') + '\n',
    );
    failures.push(name);
    counts.failed += 1;
  } else {
    counts.passed += 1;
  }
  return ok;
}

async function reachable(url) {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2_000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function adminQuery(url, text) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(text)).rows;
  } finally {
    await client.end();
  }
}

/** Chooses the PostgreSQL the suite runs against; returns its maintenance URL and how to stop it. */
async function resolveDatabase() {
  if (process.env.TEST_DATABASE_URL) {
    const url = new URL(process.env.TEST_DATABASE_URL);
    url.pathname = '/postgres';
    return { url: url.toString(), source: 'TEST_DATABASE_URL', stop: async () => undefined };
  }
  for (const user of ['postgres', 'root']) {
    const url = `postgres://${user}@127.0.0.1:5432/postgres`;
    if (await reachable(url)) return { url, source: '127.0.0.1:5432', stop: async () => undefined };
  }
  const { makeTempDataDir, startEmbeddedPostgres } = await import('../src/dev/embedded-postgres.ts');
  const dataDir = await makeTempDataDir('recorrencias-test-pg-');
  const embedded = await startEmbeddedPostgres({ dataDir: join(dataDir, 'data') });
  return {
    url: embedded.url('postgres'),
    source: `embedded PostgreSQL (port ${embedded.port})`,
    stop: async () => {
      await embedded.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

function runTap(env) {
  return new Promise((resolve) => {
    // In a process group of its own, so that whatever a test file leaves running can be found afterwards;
    // interrupting `npm test` interrupts that group.
    const child = spawn('tap', ['--reporter=tap', ...tapArgs], {
      env,
      stdio: ['ignore', 'pipe', 'inherit'],
      detached: true,
    });
    const forward = (signal) => process.kill(-child.pid, signal);
    for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, forward);
    const parser = new Parser();
    const files = new Map();
    // Each test file is a child of the root; the tests inside a file are that child's test points.
    parser.on('child', (file) => {
      const state = { lines: [], failed: 0, passed: 0, skipped: 0 };
      files.set(file.name, state);
      file.on('line', (line) => state.lines.push(line));
      file.on('assert', (point) => {
        if (point.skip || point.todo) state.skipped += 1;
        else if (point.ok) state.passed += 1;
        else state.failed += 1;
      });
    });
    // The root's own test point for a file is the verdict on the whole file, including a file that crashed
    // before reporting anything (it then counts as one failed test).
    parser.on('assert', (point) => {
      const name = point.name || '(unnamed)';
      const state = files.get(name) ?? { lines: [], failed: 0, passed: 0, skipped: 0 };
      counts.passed += state.passed;
      counts.skipped += state.skipped;
      counts.failed += state.failed;
      if (point.ok && state.failed === 0) {
        console.log(
          `ok - ${name} (${state.passed} passed${state.skipped ? `, ${state.skipped} skipped` : ''})`,
        );
        return;
      }
      if (state.failed === 0) counts.failed += 1;
      failures.push(name);
      console.log(`not ok - ${name}`);
      process.stdout.write(state.lines.map((line) => `    ${line}`).join(''));
      if (point.diag) process.stdout.write(`    ${JSON.stringify(point.diag)}\n`);
    });
    child.stdout.pipe(parser);
    child.on('close', (code) => {
      for (const signal of ['SIGINT', 'SIGTERM']) process.off(signal, forward);
      const left = killProcessGroup(child.pid);
      if (left.length > 0) console.log(`# killed processes the tests left running: ${left.join(', ')}`);
      resolve(code);
    });
  });
}

let database;
let exitCode = 0;
try {
  if (runChecks) {
    check('typecheck (tsc)', 'tsc', ['-p', 'tsconfig.json']);
    check('lint (eslint)', 'eslint', ['.']);
    check('format (prettier --check)', 'prettier', ['--check', '--log-level', 'warn', '.']);
  }
  // The suite runs the built roles (node dist/main.js <role>), exactly as they are deployed.
  const built = check('build (tsc -p tsconfig.build.json)', 'tsc', ['-p', 'tsconfig.build.json']);

  database = await resolveDatabase();
  console.log(`# database: ${database.source}`);
  const templateName = `${prefix}template`;
  await adminQuery(database.url, `CREATE DATABASE "${templateName}"`);
  const templateUrl = new URL(database.url);
  templateUrl.pathname = `/${templateName}`;
  if (built) {
    const migrated = spawnSync(process.execPath, ['dist/main.js', 'migrate'], {
      env: { ...process.env, DATABASE_URL: templateUrl.toString(), LOG_LEVEL: 'warn' },
      encoding: 'utf8',
    });
    if (migrated.status !== 0) {
      console.log(`not ok - migrate the template database\n${migrated.stdout}${migrated.stderr}`);
      counts.failed += 1;
    }
  }
  const tapCode = await runTap({
    ...process.env,
    TEST_ADMIN_DATABASE_URL: database.url,
    TEST_TEMPLATE_DATABASE: templateName,
    TEST_DATABASE_PREFIX: prefix,
    TEST_NETWORK_CUT_TAG: networkCutTag(prefix),
  });
  if (tapCode !== 0 && counts.failed === 0) counts.failed += 1;
} catch (error) {
  console.log(`not ok - test run aborted: ${error?.stack ?? error}`);
  counts.failed += 1;
} finally {
  const cuts = removeNetworkCuts(prefix);
  if (cuts.length > 0) console.log(`# removed network cuts the tests left: ${cuts.join('; ')}`);
  if (database) {
    try {
      const leftovers = await adminQuery(
        database.url,
        `SELECT datname FROM pg_database WHERE datname LIKE '${prefix}%'`,
      );
      for (const { datname } of leftovers)
        await adminQuery(database.url, `DROP DATABASE IF EXISTS "${datname}" WITH (FORCE)`);
    } catch (error) {
      console.log(`# could not drop the test databases: ${error.message}`);
    }
    await database.stop();
  }
}

if (failures.length > 0) console.log(`# failed: ${[...new Set(failures)].join(', ')}`);
if (isCi && counts.skipped > 0) {
  console.log('# CI=true: skipped tests fail the run');
  exitCode = 1;
}
if (counts.failed > 0) exitCode = 1;
console.log(
  `${counts.passed} passed, ${counts.failed} failed${counts.skipped > 0 ? `, ${counts.skipped} skipped` : ''}`,
);
process.exit(exitCode);
