// GET /metrics through app.inject on a private database: authentication, a strict parse of the Prometheus
// text format, every metric present with HELP and TYPE, and the figures following real activity (a task run,
// charges driven in-process, a hold, a pause, a dead-lettered job, a worker instance).
import t from 'tap';
import { buildAdminApp, type AdminApp } from '../../src/http/app.ts';
import { createMetricsRegistry, minutesSinceMidnight } from '../../src/ops/metrics.ts';
import { catalog } from '../../src/ops/catalog.ts';
import { createBoss } from '../../src/queue/boss.ts';
import {
  CHARGE_DEAD_LETTER_QUEUE,
  CHARGE_QUEUE,
  CHECKOUT_EVENT_QUEUE,
  PERIODIC_TASKS,
  type PeriodicTaskName,
} from '../../src/queue/task-names.ts';
import { ensureGatewaySlots } from '../../src/db/gateway-slots.ts';
import { createHttpGateway } from '../../src/gateway/http-gateway.ts';
import { enqueueChargeJobs } from '../../src/tasks/charge/charge-jobs.ts';
import { chargeRecurrence } from '../../src/tasks/charge/charge-recurrence.ts';
import { chargeQueueWorker } from '../../src/tasks/charge/charge-worker.ts';
import { runPeriodicTask } from '../../src/tasks/periodic-runner.ts';
import { PERIODIC_TASK_DEFINITIONS } from '../../src/tasks/registry.ts';
import { tryLockTaskRun, unlockTaskRun } from '../../src/db/task-runs.ts';
import { createAdminHarness, operator, reader, type AdminHarness } from '../helpers/admin.ts';
import { query } from '../helpers/database.ts';
import { insertRecurrence, silentLog } from '../helpers/harness.ts';
import { eventually, logMessage, startService } from '../helpers/processes.ts';

const DAY = '2031-03-10';
/** 08:45 in São Paulo (UTC-3) on DAY. */
const NOW = new Date('2031-03-10T11:45:00Z');

/** The families /metrics must export, with their label names. */
const EXPECTED: Record<string, string[]> = {
  recorrencias_jobs: ['queue', 'state'],
  recorrencias_dead_letter_jobs: ['queue'],
  recorrencias_job_duration_seconds: ['queue', 'quantile'],
  recorrencias_jobs_completed_15m: ['queue'],
  recorrencias_jobs_failed_15m: ['queue'],
  recorrencias_charges: ['outcome'],
  recorrencias_charges_amount_cents: ['outcome'],
  recorrencias_pending_attempts: [],
  recorrencias_oldest_pending_attempt_age_seconds: [],
  recorrencias_blocked_attempts: [],
  recorrencias_gateway_key_retention_seconds: [],
  recorrencias_charge_jobs_retrying: ['reason'],
  recorrencias_gateway_slots: ['state'],
  recorrencias_recurrences: ['status'],
  recorrencias_recurrences_due: [],
  recorrencias_recurrences_waiting_retry: [],
  recorrencias_task_last_success_timestamp_seconds: ['task'],
  recorrencias_first_task_run_timestamp_seconds: [],
  recorrencias_task_succeeded_for_business_date: ['task'],
  recorrencias_task_running: ['task'],
  recorrencias_task_due_minutes: ['task'],
  recorrencias_business_time_minutes: [],
  recorrencias_notices: ['status'],
  recorrencias_notices_recorded_unsent: [],
  recorrencias_notice_oldest_undelivered_age_seconds: [],
  recorrencias_checkout_events_undelivered: [],
  recorrencias_checkout_event_oldest_undelivered_age_seconds: [],
  recorrencias_instances_alive: ['role'],
  recorrencias_instance_crashes_15m: ['role'],
  recorrencias_queue_paused: ['queue'],
  recorrencias_postgres_connections: ['limit', 'state'],
};

// ---- A strict parser of the text exposition format (version 0.0.4) ----

type Labels = Record<string, string>;
type Sample = { name: string; labels: Labels; value: number };
type Family = { name: string; help: string | null; type: string | null; samples: Sample[] };

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);
const SUFFIXES: Record<string, string[]> = {
  histogram: ['_bucket', '_sum', '_count'],
  summary: ['_sum', '_count'],
};

/** Values as Prometheus reads them (Go's ParseFloat): prom-client writes NaN as "Nan", which it accepts. */
function parseValue(text: string, line: string): number {
  if (/^nan$/i.test(text)) return Number.NaN;
  if (/^\+?inf(inity)?$/i.test(text)) return Infinity;
  if (/^-inf(inity)?$/i.test(text)) return -Infinity;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text))
    throw new Error(`bad value "${text}" in: ${line}`);
  return Number(text);
}

/** Reads `{a="x",b="y"}` from `text` at `start`; returns the labels and the index after `}`. */
function parseLabels(text: string, start: number, line: string): { labels: Labels; end: number } {
  const labels: Labels = {};
  let i = start + 1;
  const fail = (why: string) => new Error(`${why} at column ${i} in: ${line}`);
  while (text[i] !== '}') {
    const eq = text.indexOf('=', i);
    if (eq < 0) throw fail('label without "="');
    const name = text.slice(i, eq).trim();
    if (!LABEL_NAME.test(name)) throw fail(`bad label name "${name}"`);
    if (name in labels) throw fail(`duplicate label "${name}"`);
    if (text[eq + 1] !== '"') throw fail('label value not quoted');
    let value = '';
    i = eq + 2;
    for (;;) {
      const c = text[i];
      if (c === undefined) throw fail('unterminated label value');
      if (c === '"') break;
      if (c === '\\') {
        const next = text[i + 1];
        if (next === 'n') value += '\n';
        else if (next === '\\' || next === '"') value += next;
        else throw fail('bad escape in label value');
        i += 2;
      } else {
        value += c;
        i += 1;
      }
    }
    labels[name] = value;
    i += 1;
    if (text[i] === ',') i += 1;
    else if (text[i] !== '}') throw fail('expected "," or "}"');
  }
  return { labels, end: i + 1 };
}

function familyOf(name: string, families: Map<string, Family>): string {
  for (const [base, family] of families) {
    const suffixes = SUFFIXES[family.type ?? ''] ?? [];
    if (suffixes.some((suffix) => name === `${base}${suffix}`)) return base;
  }
  return name;
}

/** Parses an exposition; throws on anything the format does not allow. */
function parseExposition(text: string): Map<string, Family> {
  if (!text.endsWith('\n')) throw new Error('the exposition must end with a newline');
  const families = new Map<string, Family>();
  const finished = new Set<string>();
  const series = new Set<string>();
  let current: string | null = null;
  const family = (name: string): Family => {
    if (!METRIC_NAME.test(name)) throw new Error(`bad metric name "${name}"`);
    if (finished.has(name)) throw new Error(`family ${name} is not contiguous`);
    if (current !== null && current !== name) finished.add(current);
    current = name;
    let found = families.get(name);
    if (found === undefined) {
      found = { name, help: null, type: null, samples: [] };
      families.set(name, found);
    }
    return found;
  };
  for (const line of text.slice(0, -1).split('\n')) {
    if (line.trim() === '') continue;
    const meta = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
    if (meta !== null) {
      const [, kind, name = '', rest = ''] = meta;
      const f = family(name);
      if (f.samples.length > 0) throw new Error(`${kind} after samples of ${name}`);
      if (kind === 'HELP') {
        if (f.help !== null) throw new Error(`second HELP for ${name}`);
        if (/\\[^n\\]/.test(rest)) throw new Error(`bad escape in HELP of ${name}`);
        f.help = rest;
      } else {
        if (f.type !== null) throw new Error(`second TYPE for ${name}`);
        if (!TYPES.has(rest)) throw new Error(`bad TYPE "${rest}" for ${name}`);
        f.type = rest;
      }
      continue;
    }
    if (line.startsWith('#')) continue;
    const nameEnd = line.search(/[{ ]/);
    if (nameEnd <= 0) throw new Error(`bad sample line: ${line}`);
    const name = line.slice(0, nameEnd);
    let labels: Labels = {};
    let rest = line.slice(nameEnd);
    if (rest.startsWith('{')) {
      const parsed = parseLabels(line, nameEnd, line);
      labels = parsed.labels;
      rest = line.slice(parsed.end);
    }
    const fields = rest.trim().split(/ +/);
    if (!rest.startsWith(' ') || fields.length < 1 || fields.length > 2)
      throw new Error(`bad sample line: ${line}`);
    const value = parseValue(fields[0] ?? '', line);
    if (fields[1] !== undefined && !/^-?\d+$/.test(fields[1])) throw new Error(`bad timestamp in: ${line}`);
    const f = family(familyOf(name, families));
    if (f.type === 'histogram' && name.endsWith('_bucket') && !('le' in labels))
      throw new Error(`bucket without le: ${line}`);
    if (f.type === 'summary' && name === f.name && !('quantile' in labels))
      throw new Error(`quantile missing: ${line}`);
    const key = `${name}${JSON.stringify(Object.entries(labels).sort())}`;
    if (series.has(key)) throw new Error(`duplicate series: ${line}`);
    series.add(key);
    f.samples.push({ name, labels, value });
  }
  return families;
}

// ---- Helpers ----

async function scrape(app: AdminApp): Promise<Map<string, Family>> {
  const response = await app.inject({ method: 'GET', url: '/metrics', headers: reader });
  if (response.statusCode !== 200)
    throw new Error(`/metrics answered ${response.statusCode}: ${response.body}`);
  return parseExposition(response.body);
}

function sameLabels(a: Labels, b: Labels): boolean {
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((key) => a[key] === b[key]);
}

function value(families: Map<string, Family>, name: string, labels: Labels = {}): number {
  const sample = families.get(name)?.samples.find((s) => s.name === name && sameLabels(s.labels, labels));
  if (sample === undefined) throw new Error(`no sample ${name}${JSON.stringify(labels)}`);
  return sample.value;
}

function runTask(h: AdminHarness, task: PeriodicTaskName) {
  return runPeriodicTask(PERIODIC_TASK_DEFINITIONS[task], h.deps, {
    date: DAY,
    force: false,
    jobId: null,
    attempt: 1,
    signal: new AbortController().signal,
  });
}

// ---- Tests ----

t.test('the parser refuses what the format does not allow', async (t) => {
  const ok = '# HELP a_b help\n# TYPE a_b gauge\na_b{x="1",y="q\\"\\n"} 1.5\na_b 2 1700000000000\n';
  t.same(value(parseExposition(ok), 'a_b', { x: '1', y: 'q"\n' }), 1.5);
  const bad = [
    '# TYPE a gauge\na 1',
    '# TYPE a gauge\n# TYPE a gauge\na 1\n',
    '# TYPE a gauge\na 1\n# HELP a late\n',
    '# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na 2\n',
    '# TYPE a gauge\na{x="1"} 1\na{x="1"} 2\n',
    '# TYPE a gauge\na{x=1} 1\n',
    '# TYPE a gauge\na{1x="1"} 1\n',
    '# TYPE a gauge\na one\n',
    '# TYPE a wibble\na 1\n',
    '# TYPE a histogram\na_bucket 1\n',
  ];
  for (const text of bad) t.throws(() => parseExposition(text), JSON.stringify(text));
});

t.test('GET /metrics needs a token; a read token is enough', async (t) => {
  const h = await createAdminHarness(t);
  t.equal((await h.app.inject({ method: 'GET', url: '/metrics' })).statusCode, 401);
  t.equal(
    (await h.app.inject({ method: 'GET', url: '/metrics', headers: { authorization: 'Bearer nope' } }))
      .statusCode,
    401,
  );
  const response = await h.app.inject({ method: 'GET', url: '/metrics', headers: reader });
  t.equal(response.statusCode, 200);
  t.match(response.headers['content-type'], /^text\/plain; version=0\.0\.4/);
  t.equal((await h.app.inject({ method: 'GET', url: '/metrics', headers: operator })).statusCode, 200);

  // A second app in the same process has its own registry: no "already registered" clash.
  const other = await buildAdminApp({
    config: h.config,
    log: silentLog,
    pool: h.pool,
    boss: h.boss,
    now: h.deps.now,
  });
  t.teardown(() => other.close());
  t.equal((await other.inject({ method: 'GET', url: '/metrics', headers: reader })).statusCode, 200);
});

t.test('every metric is exported with HELP and TYPE, zero-filled on an empty database', async (t) => {
  const h = await createAdminHarness(t);
  h.setNow(NOW);
  const families = await scrape(h.app);
  const ours = [...families.keys()].filter((name) => name.startsWith('recorrencias_')).sort();
  t.same(ours, Object.keys(EXPECTED).sort(), 'exactly the documented recorrencias_ families');
  const registered = (await createMetricsRegistry().registry.getMetricsAsJSON()).map((metric) => metric.name);
  t.same(
    ours,
    registered.filter((name) => name.startsWith('recorrencias_')).sort(),
    'the registry declares the same',
  );
  for (const name of Object.keys(EXPECTED)) {
    const family = families.get(name);
    t.ok(family?.help !== null && (family?.help ?? '').length > 10, `${name} has HELP`);
    t.equal(family?.type, 'gauge', `${name} is a gauge`);
    for (const sample of family?.samples ?? []) {
      t.same(Object.keys(sample.labels).sort(), [...(EXPECTED[name] ?? [])].sort(), `${name} labels`);
    }
  }
  for (const name of [
    'process_cpu_user_seconds_total',
    'process_resident_memory_bytes',
    'nodejs_heap_size_used_bytes',
  ]) {
    t.ok(families.has(name), `process default ${name}`);
  }

  const queues = catalog().map((entry) => entry.name);
  for (const queue of queues) {
    for (const state of ['queued', 'deferred', 'retry', 'active', 'failed']) {
      t.equal(value(families, 'recorrencias_jobs', { queue, state }), 0, `jobs ${queue} ${state}`);
    }
    t.equal(value(families, 'recorrencias_queue_paused', { queue }), 0);
    t.equal(value(families, 'recorrencias_jobs_completed_15m', { queue }), 0);
  }
  t.equal(value(families, 'recorrencias_dead_letter_jobs', { queue: 'cobrar_recorrencia' }), 0);
  for (const task of PERIODIC_TASKS) {
    t.equal(value(families, 'recorrencias_task_last_success_timestamp_seconds', { task }), 0);
    t.equal(value(families, 'recorrencias_task_succeeded_for_business_date', { task }), 0);
    t.equal(value(families, 'recorrencias_task_running', { task }), 0);
  }
  for (const outcome of ['approved', 'declined', 'rejected', 'pending']) {
    t.equal(value(families, 'recorrencias_charges', { outcome }), 0);
    t.equal(value(families, 'recorrencias_charges_amount_cents', { outcome }), 0);
  }
  for (const status of ['ativo', 'hold', 'pausado', 'cancelado', 'concluido']) {
    t.equal(value(families, 'recorrencias_recurrences', { status }), 0);
  }
  for (const status of ['pendente', 'falhou']) {
    t.equal(value(families, 'recorrencias_notices', { status }), 0);
  }
  t.equal(value(families, 'recorrencias_notices_recorded_unsent'), 0);
  for (const role of ['worker', 'scheduler', 'admin']) {
    t.equal(value(families, 'recorrencias_instances_alive', { role }), 0, `no ${role} alive`);
    t.equal(value(families, 'recorrencias_instance_crashes_15m', { role }), 0, `no ${role} crashed`);
  }
  t.same(families.get('recorrencias_charge_jobs_retrying')?.samples, [], 'no charge job waits for a retry');
  t.equal(value(families, 'recorrencias_gateway_slots', { state: 'total' }), 200, 'the default cap');
  t.equal(value(families, 'recorrencias_gateway_slots', { state: 'taken' }), 0);
  t.equal(value(families, 'recorrencias_gateway_key_retention_seconds'), 24 * 3600);
  const [server] = await query<{ max: number; used: number }>(
    h.url,
    `SELECT current_setting('max_connections')::int AS max,
       (SELECT count(*)::int FROM pg_stat_activity WHERE backend_type = 'client backend') AS used`,
  );
  t.equal(
    value(families, 'recorrencias_postgres_connections', { limit: 'server', state: 'allowed' }),
    server?.max,
    'max_connections (the tests log in as a superuser, who may use the reserved slots)',
  );
  const used = value(families, 'recorrencias_postgres_connections', { limit: 'server', state: 'used' });
  t.ok(used >= 1 && used <= (server?.max ?? 0), `connections in use (${used})`);
  t.equal(value(families, 'recorrencias_business_time_minutes'), 8 * 60 + 45, '08:45 in São Paulo');
  t.equal(value(families, 'recorrencias_first_task_run_timestamp_seconds'), 0, 'no task ran yet');
  t.same(
    families
      .get('recorrencias_task_due_minutes')
      ?.samples.map((sample) => [sample.labels.task, sample.value]),
    [
      ['processar_recorrencias_do_dia', 8 * 60],
      ['retentar_cobrancas_falhadas', 10 * 60],
      ['notificar_recorrencias_hold', 18 * 60],
    ],
    "each task's time on this Monday, from the stored schedules; the Sunday cleanup has none",
  );
  t.equal(value(families, 'recorrencias_oldest_pending_attempt_age_seconds'), 0);
  t.equal(value(families, 'recorrencias_notice_oldest_undelivered_age_seconds'), 0);
});

t.test('the 15-minute figures take the jobs finished in the window, and only those', async (t) => {
  const h = await createAdminHarness(t);
  const queue = CHECKOUT_EVENT_QUEUE;
  const finished = (n: number, state: string, runSeconds: number, minutesAgo: number) =>
    query(
      h.url,
      `INSERT INTO pgboss.job (name, state, data, policy, started_on, completed_on)
       SELECT $1, $2::pgboss.job_state, '{}', 'standard',
         now() - make_interval(mins => $4) - make_interval(secs => $3), now() - make_interval(mins => $4)
       FROM generate_series(1, $5)`,
      [queue, state, runSeconds, minutesAgo, n],
    );
  await finished(10, 'completed', 2, 1);
  await finished(7, 'completed', 500, 20); // before the window
  await finished(3, 'failed', 1, 1);
  await finished(2, 'failed', 1, 20);
  await finished(4, 'cancelled', 1, 1);
  const families = await scrape(h.app);
  t.equal(value(families, 'recorrencias_jobs_completed_15m', { queue }), 10);
  t.equal(value(families, 'recorrencias_jobs_failed_15m', { queue }), 3);
  t.equal(value(families, 'recorrencias_jobs', { queue, state: 'failed' }), 5, 'failed jobs are kept');
  for (const quantile of ['0.5', '0.95', '0.99']) {
    t.equal(value(families, 'recorrencias_job_duration_seconds', { queue, quantile }), 2, quantile);
  }
});

t.test('business minutes follow the configured time zone', async (t) => {
  t.equal(minutesSinceMidnight(new Date('2031-03-10T02:59:00Z'), 'America/Sao_Paulo'), 23 * 60 + 59);
  t.equal(minutesSinceMidnight(new Date('2031-03-10T03:00:00Z'), 'America/Sao_Paulo'), 0);
  t.equal(minutesSinceMidnight(new Date('2031-03-10T03:00:00Z'), 'UTC'), 180);
});

t.test('the figures follow activity', async (t) => {
  const h = await createAdminHarness(t);
  h.setNow(NOW);
  const before = await scrape(h.app);

  // The daily run enqueues both due recurrences; a worker charges them: one approved, one put on hold.
  await insertRecurrence(h.pool, { proxima_cobranca: DAY, valor_centavos: 12345 });
  await insertRecurrence(h.pool, {
    proxima_cobranca: DAY,
    valor_centavos: 5000,
    cartao_token: 'tok_recusa_irreversivel_1',
    vendedor_id: 'vendedor-2',
  });
  t.match(await runTask(h, 'processar_recorrencias_do_dia'), { status: 'succeeded' });
  const jobs = await h.fetchChargeJobs(2);
  t.equal(jobs.length, 2);
  for (const job of jobs) await chargeRecurrence(h.deps, job);
  t.match(await runTask(h, 'notificar_recorrencias_hold'), { status: 'succeeded' });

  // An attempt left unresolved two hours ago, and a notice not delivered for as long.
  const pendingId = await insertRecurrence(h.pool, { proxima_cobranca: DAY, valor_centavos: 700 });
  await query(
    h.url,
    `INSERT INTO checkout_recorrencia_cobrancas (recorrencia_id, ciclo, tentativa, chave_idempotencia, valor_centavos,
       moeda, cartao_token, data_negocio, criado_em)
     VALUES ($1, $2, 1, $3, 700, 'BRL', 'tok_aprova_1', $2, now() - interval '2 hours')`,
    [pendingId, DAY, `rec-${pendingId}-${DAY}-t1`],
  );
  await query(
    h.url,
    `INSERT INTO avisos_vendedores (vendedor_id, data_negocio, corte_em, novas_em_hold, total_em_hold, conteudo, criado_em)
     VALUES ('vendedor-9', $1, now(), 1, 1, '{}', now() - interval '2 hours')`,
    ['2031-03-09'],
  );

  const pause = await h.app.inject({
    method: 'POST',
    url: '/tasks/enviar_aviso_vendedor/pause',
    headers: operator,
  });
  t.equal(pause.statusCode, 200);
  await h.boss.send(CHARGE_DEAD_LETTER_QUEUE, { recorrenciaId: 1, dataNegocio: DAY, motivo: 'agendada' });
  // A task job whose retries ran out.
  await h.boss.send('limpar_recorrencias_antigas', {}, { retryLimit: 0 });
  const [cleanup] = await h.boss.fetch('limpar_recorrencias_antigas');
  if (cleanup === undefined) throw new Error('no limpar_recorrencias_antigas job to fail');
  await h.boss.fail('limpar_recorrencias_antigas', cleanup, { error: 'it failed' });
  const worker = createBoss(h.config, h.url, 'worker', silentLog);
  await worker.start();
  t.teardown(() => worker.stop({ graceful: false, close: true }));

  const after = await scrape(h.app);
  const delta = (name: string, labels: Labels = {}) =>
    value(after, name, labels) - value(before, name, labels);

  t.equal(delta('recorrencias_charges', { outcome: 'approved' }), 1);
  t.equal(delta('recorrencias_charges_amount_cents', { outcome: 'approved' }), 12345);
  t.equal(delta('recorrencias_charges', { outcome: 'declined' }), 1);
  t.equal(delta('recorrencias_charges_amount_cents', { outcome: 'declined' }), 5000);
  t.equal(delta('recorrencias_charges', { outcome: 'pending' }), 1);
  t.equal(delta('recorrencias_charges_amount_cents', { outcome: 'pending' }), 700);
  t.equal(value(after, 'recorrencias_pending_attempts'), 1);
  const pendingAge = value(after, 'recorrencias_oldest_pending_attempt_age_seconds');
  t.ok(pendingAge >= 7200 && pendingAge < 7200 + 600, `oldest pending attempt ~2 h old (${pendingAge})`);

  t.equal(
    delta('recorrencias_recurrences', { status: 'hold' }),
    1,
    'the irreversible decline put one on hold',
  );
  t.equal(value(after, 'recorrencias_recurrences', { status: 'ativo' }), 2);
  t.equal(value(after, 'recorrencias_recurrences_due'), 1, 'the one with a pending attempt is still due');
  t.equal(value(after, 'recorrencias_recurrences_waiting_retry'), 0);

  const processar = { task: 'processar_recorrencias_do_dia' };
  const lastSuccess = value(after, 'recorrencias_task_last_success_timestamp_seconds', processar);
  t.ok(Math.abs(lastSuccess - Date.now() / 1000) < 600, `last success is now (${lastSuccess})`);
  const firstRun = value(after, 'recorrencias_first_task_run_timestamp_seconds');
  t.ok(firstRun > 0 && firstRun <= lastSuccess, `the first run started before it ended (${firstRun})`);
  t.equal(value(after, 'recorrencias_task_succeeded_for_business_date', processar), 1);
  t.equal(
    value(after, 'recorrencias_task_succeeded_for_business_date', { task: 'retentar_cobrancas_falhadas' }),
    0,
  );
  t.equal(value(after, 'recorrencias_task_running', processar), 0);

  t.same(
    after
      .get('recorrencias_jobs')
      ?.samples.filter((sample) => ['completed', 'cancelled'].includes(sample.labels.state ?? '')),
    [],
    'finished jobs are not counted among the live ones',
  );
  t.equal(value(after, 'recorrencias_jobs_completed_15m', { queue: 'cobrar_recorrencia' }), 2);
  t.equal(value(after, 'recorrencias_jobs_failed_15m', { queue: 'cobrar_recorrencia' }), 0);
  t.equal(
    value(after, 'recorrencias_jobs_failed_15m', { queue: 'limpar_recorrencias_antigas' }),
    1,
    'the task job whose retries ran out',
  );
  for (const quantile of ['0.5', '0.95', '0.99']) {
    t.ok(value(after, 'recorrencias_job_duration_seconds', { queue: 'cobrar_recorrencia', quantile }) >= 0);
  }
  t.equal(value(after, 'recorrencias_dead_letter_jobs', { queue: 'cobrar_recorrencia' }), 1);
  t.equal(value(after, 'recorrencias_jobs', { queue: CHARGE_DEAD_LETTER_QUEUE, state: 'queued' }), 1);

  t.same(
    after.get('recorrencias_notices')?.samples.map((sample) => [sample.labels.status, sample.value]),
    [
      ['pendente', 1],
      ['falhou', 0],
    ],
    'the undelivered notice; not the hold notice recorded without a webhook',
  );
  const noticeAge = value(after, 'recorrencias_notice_oldest_undelivered_age_seconds');
  t.ok(noticeAge >= 7200 && noticeAge < 7200 + 600, `oldest undelivered notice ~2 h old (${noticeAge})`);

  t.equal(value(after, 'recorrencias_queue_paused', { queue: 'enviar_aviso_vendedor' }), 1);
  t.equal(value(after, 'recorrencias_queue_paused', { queue: 'cobrar_recorrencia' }), 0);
  t.equal(delta('recorrencias_instances_alive', { role: 'worker' }), 1);
  t.equal(value(after, 'recorrencias_instances_alive', { role: 'scheduler' }), 0);
});

t.test('a task is running only while its run holds the (task, date) lock', async (t) => {
  const h = await createAdminHarness(t);
  h.setNow(NOW);
  const task = 'limpar_recorrencias_antigas';
  // A row a crashed process left behind, for an earlier date than today's.
  await query(h.url, `INSERT INTO execucoes_tarefas (tarefa, data_negocio) VALUES ($1, '2031-03-08')`, [
    task,
  ]);
  t.equal(value(await scrape(h.app), 'recorrencias_task_running', { task }), 0, 'a stale row is not a run');
  await h.pool.connect(async (session) => {
    t.ok(await tryLockTaskRun(session, task, '2031-03-08'));
    t.equal(value(await scrape(h.app), 'recorrencias_task_running', { task }), 1, 'the lock is held');
    t.equal(
      value(await scrape(h.app), 'recorrencias_task_running', { task: 'processar_recorrencias_do_dia' }),
      0,
    );
    await unlockTaskRun(session);
  });
  t.equal(value(await scrape(h.app), 'recorrencias_task_running', { task }), 0);
});

t.test(
  'charge jobs waiting for a retry are counted by reason: a wrong GATEWAY_API_KEY shows as unauthorized',
  async (t) => {
    const h = await createAdminHarness(t, {}, { apiKey: 'the-right-key-0123456789' });
    const id = await insertRecurrence(h.pool, { proxima_cobranca: DAY });
    const wrongKey = createHttpGateway({
      url: h.gateway.url,
      apiKey: 'a-wrong-key-0123456789',
      timeoutMs: 1000,
      log: silentLog,
    });
    const worker = await chargeQueueWorker(h.boss, { ...h.deps, gateway: wrongKey });
    t.teardown(() => worker.stop());
    await enqueueChargeJobs(h.boss, [{ recorrenciaId: id, dataNegocio: DAY, motivo: 'agendada' }]);
    await worker.register();
    await eventually(async () => {
      const [job] = await query<{ state: string }>(h.url, 'SELECT state FROM pgboss.job WHERE name = $1', [
        CHARGE_QUEUE,
      ]);
      return job?.state === 'retry' ? job : undefined;
    });
    await h.boss.offWork(CHARGE_QUEUE);
    const families = await scrape(h.app);
    t.same(
      families
        .get('recorrencias_charge_jobs_retrying')
        ?.samples.map((sample) => [sample.labels.reason, sample.value]),
      [['unauthorized', 1]],
    );
    t.equal(value(families, 'recorrencias_gateway_slots', { state: 'taken' }), 0, 'its slot was given back');
    t.equal(h.gateway.ledger().length, 0, 'nothing was charged');

    // A worker started with another GATEWAY_MAX_CONCURRENCY learns the cap it replaces (and warns about it).
    t.equal(await ensureGatewaySlots(h.pool, 50), 200, 'the previous cap');
    const resized = await scrape(h.app);
    t.equal(value(resized, 'recorrencias_gateway_slots', { state: 'total' }), 50, 'the cluster-wide cap now');
  },
);

t.test('crashes count within 15 minutes only, and a clean stop is not a crash', async (t) => {
  const h = await createAdminHarness(t);
  // Lives of workers: killed on Monday and on Friday (an OOM kill now and then), stopped cleanly a minute ago,
  // killed a minute ago, and one still alive. Only the recent kill is a crash of the window.
  await query(
    h.url,
    `INSERT INTO pgboss.instance (id, name, host, pid, version, node_version, heartbeat_seconds, supervise,
       schedule, migrate, persist_queue_stats, persist_warnings, started_on, heartbeat_on, stopped_on)
     SELECT gen_random_uuid(), 'recorrencias-worker', 'host-1', 100 + n, '12', 'v24', 10, true, false, false,
       false, false, now() - l.age - interval '1 hour', now() - l.age, l.stopped
     FROM (VALUES (1, interval '6 days', NULL::timestamptz), (2, interval '2 days', NULL),
                  (3, interval '1 minute', now() - interval '1 minute'), (4, interval '1 minute', NULL),
                  (5, interval '0 seconds', NULL)) AS l (n, age, stopped)`,
  );
  const families = await scrape(h.app);
  t.equal(value(families, 'recorrencias_instance_crashes_15m', { role: 'worker' }), 1);
  t.equal(value(families, 'recorrencias_instances_alive', { role: 'worker' }), 1);
});

t.test('a worker in a crash loop shows as crashes, while it still counts as alive', async (t) => {
  const h = await createAdminHarness(t);
  const env = { DATABASE_URL: h.url, GATEWAY_URL: h.gateway.url, LOG_LEVEL: 'info' };
  // Three lives killed with SIGKILL (as the kernel's out-of-memory killer does), then a fourth.
  for (let life = 1; life <= 3; life++) {
    const worker = startService(t, ['worker'], env);
    await worker.waitForLog(logMessage('worker started'), 30_000);
    await worker.stop('SIGKILL');
  }
  const last = startService(t, ['worker'], env);
  await last.waitForLog(logMessage('worker started'), 30_000);
  // pg-boss counts a crashed life once its heartbeats stop (three missed, 30 s).
  const families = await eventually(
    async () => {
      const scraped = await scrape(h.app);
      return value(scraped, 'recorrencias_instance_crashes_15m', { role: 'worker' }) >= 2
        ? scraped
        : undefined;
    },
    90_000,
    1_000,
  );
  t.ok(value(families, 'recorrencias_instance_crashes_15m', { role: 'worker' }) >= 2);
  t.ok(
    value(families, 'recorrencias_instances_alive', { role: 'worker' }) >= 1,
    'the worker still counts as alive: the alive alert alone would not fire',
  );
});

t.test('notices the last notice run recorded without a webhook are counted until re-sent', async (t) => {
  const h = await createAdminHarness(t);
  h.setNow(NOW);
  for (const seller of ['loja-a', 'loja-b']) {
    await insertRecurrence(h.pool, { proxima_cobranca: DAY, vendedor_id: seller, status: 'hold' });
  }
  t.match(await runTask(h, 'notificar_recorrencias_hold'), { status: 'succeeded' });
  t.equal(value(await scrape(h.app), 'recorrencias_notices_recorded_unsent'), 2, 'both recorded, none sent');

  const [first, second] = await query<{ id: number }>(h.url, 'SELECT id FROM avisos_vendedores ORDER BY id');
  const resent = await h.app.inject({
    method: 'POST',
    url: `/avisos/${first?.id}/reenviar`,
    headers: operator,
  });
  t.equal(resent.statusCode, 200);
  t.equal(
    value(await scrape(h.app), 'recorrencias_notices_recorded_unsent'),
    1,
    'a re-sent one no longer counts',
  );
  // The runbook's way to give a notice up also leaves it registrado, with the reason: not counted either.
  await query(h.url, `UPDATE avisos_vendedores SET ultimo_erro = 'abandonado: teste' WHERE id = $1`, [
    second?.id,
  ]);
  t.equal(value(await scrape(h.app), 'recorrencias_notices_recorded_unsent'), 0);
});
