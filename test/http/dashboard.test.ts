// The dashboard page in a real browser (Debian's Chromium driven by playwright-core) against the admin server
// on a real port: the token form, counts that match the database, running, pausing and resuming a task, a
// refused token, a reload, and a read-only token. Plus how the page's files are served.
import { existsSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { chromium, type Browser, type Locator, type Page } from 'playwright-core';
import t, { type Test } from 'tap';
import { businessDate, type IsoDate } from '../../src/domain/dates.ts';
import { createAdminHarness, OPERATOR_TOKEN, READ_TOKEN, type AdminHarness } from '../helpers/admin.ts';
import { query } from '../helpers/database.ts';
import { insertRecurrence } from '../helpers/harness.ts';

const CHROMIUM = '/usr/bin/chromium';
const LAUNCH_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
/** How long any one thing may take to show up; the page refreshes every 5 s and after every action. */
const WAIT_MS = 15_000;

/** Waits (Playwright's auto-waiting) until the element's whole text matches; the failure says what it read. */
async function waitForText(locator: Locator, pattern: RegExp): Promise<string> {
  try {
    await locator.filter({ hasText: pattern }).first().waitFor({ timeout: WAIT_MS });
  } catch (error) {
    const seen = await locator
      .first()
      .textContent({ timeout: 100 })
      .catch(() => '(no such element)');
    throw new Error(
      `${locator.toString()} should match ${String(pattern)}; it reads ${JSON.stringify(seen)}`,
      {
        cause: error,
      },
    );
  }
  return (await locator.first().textContent()) ?? '';
}

const exactly = (value: number | string) =>
  new RegExp(`^${String(value).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`);

/** BRL as the page writes it, with any whitespace (pt-BR puts a no-break space after R$) matched loosely. */
function brl(cents: number): RegExp {
  const text = new Intl.NumberFormat('pt-BR', { style: 'currency', currency: 'BRL' }).format(cents / 100);
  return new RegExp(`^${text.replace(/[.$]/g, '\\$&').replace(/\s/g, '\\s')}$`);
}

/** Recurrences in every state the page counts, and today's attempts (two approved, one declined, one pending). */
async function seed(h: AdminHarness, today: IsoDate): Promise<void> {
  const due = [
    await insertRecurrence(h.pool, { proxima_cobranca: today }),
    await insertRecurrence(h.pool, { proxima_cobranca: today, valor_centavos: 12_000 }),
    await insertRecurrence(h.pool, { proxima_cobranca: today, vendedor_id: 'vendedor-2' }),
  ];
  await insertRecurrence(h.pool, { proxima_cobranca: '2099-01-15' });
  const retrying = await insertRecurrence(h.pool, {
    proxima_cobranca: today,
    proxima_tentativa: '2099-01-02',
  });
  await insertRecurrence(h.pool, { proxima_cobranca: today, status: 'hold' });
  await insertRecurrence(h.pool, { proxima_cobranca: today, status: 'hold' });
  await insertRecurrence(h.pool, { proxima_cobranca: today, status: 'pausado' });
  const attempts: Array<[number, string, number]> = [
    [due[0] ?? 0, 'aprovada', 4_990],
    [due[1] ?? 0, 'aprovada', 12_000],
    [due[2] ?? 0, 'recusada', 4_990],
    [retrying, 'pendente', 7_550],
  ];
  for (const [id, status, cents] of attempts) {
    await query(
      h.url,
      `INSERT INTO checkout_recorrencia_cobrancas (recorrencia_id, ciclo, tentativa, chave_idempotencia, status,
         valor_centavos, moeda, cartao_token, data_negocio, resolvida_em)
       VALUES ($1, $2::date, 1, $3, $4, $5, 'BRL', 'tok_teste', $2::date,
         CASE WHEN $4 = 'pendente' THEN NULL ELSE now() END)`,
      [id, today, `${id}:${today}:1`, status, cents],
    );
  }
}

/** What the page must show, read from the database with queries of this test's own. */
async function expectedCounts(url: string, today: IsoDate) {
  const byStatus = await query<{ status: string; n: number }>(
    url,
    'SELECT status, count(*)::int AS n FROM checkout_recorrencias GROUP BY status',
  );
  const [figures] = await query<{ due: number; retrying: number }>(
    url,
    `SELECT count(*) FILTER (WHERE proxima_tentativa IS NULL AND proxima_cobranca <= $1::date)::int AS due,
       count(*) FILTER (WHERE proxima_tentativa IS NOT NULL)::int AS retrying
     FROM checkout_recorrencias WHERE status = 'ativo'`,
    [today],
  );
  const attempts = await query<{ status: string; n: number; cents: number }>(
    url,
    `SELECT status, count(*)::int AS n, sum(valor_centavos)::int AS cents FROM checkout_recorrencia_cobrancas
     WHERE data_negocio = $1::date GROUP BY status`,
    [today],
  );
  return { byStatus, due: figures?.due ?? 0, retrying: figures?.retrying ?? 0, attempts };
}

async function signIn(page: Page, token: string): Promise<void> {
  await page.getByLabel('Admin token').fill(token);
  await page.getByRole('button', { name: 'Open the dashboard' }).click();
}

const stat = (page: Page, name: string) => page.locator(`dd[data-stat="${name}"]`);
const queueCell = (page: Page, queue: string, field: string) =>
  page.locator(`#queues tr[data-queue="${queue}"] [data-field="${field}"]`);
const scheduleState = (page: Page, task: string) =>
  page.locator(`#schedules tr[data-task="${task}"] [data-field="state"]`);
const actionMessage = (page: Page) => page.locator('#action-message');

async function jobsOf(
  url: string,
  queue: string,
): Promise<Array<{ id: string; state: string; data: unknown }>> {
  return query(url, 'SELECT id::text, state::text, data FROM pgboss.job WHERE name = $1', [queue]);
}

t.test('the page and its files are public, typed, and revalidated by ETag', async (t) => {
  const h = await createAdminHarness(t);
  for (const [url, type] of [
    ['/', 'text/html; charset=utf-8'],
    ['/dashboard.js', 'text/javascript; charset=utf-8'],
    ['/dashboard.css', 'text/css; charset=utf-8'],
  ] as const) {
    const response = await h.app.inject({ method: 'GET', url });
    t.equal(response.statusCode, 200, `${url} without a token`);
    t.equal(response.headers['content-type'], type, `${url} content type`);
    t.equal(response.headers['cache-control'], 'no-cache', `${url} is revalidated`);
    t.match(response.headers['content-security-policy'], /script-src 'self'/, `${url} has a CSP`);
    const etag = String(response.headers.etag);
    const again = await h.app.inject({ method: 'GET', url, headers: { 'if-none-match': etag } });
    t.equal(again.statusCode, 304, `${url} unchanged: 304`);
  }
  const page = await h.app.inject({ method: 'GET', url: '/' });
  t.match(page.body, /<script type="module" src="\/dashboard.js"><\/script>/);
});

t.test('the dashboard in Chromium', async (t) => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: this test drives Debian's Chromium (apt-get install chromium)`);
  }
  const started = Date.now();
  const h = await createAdminHarness(t);
  const today = businessDate(new Date(), h.config.timeZone);
  await seed(h, today);
  await h.app.listen({ port: 0, host: '127.0.0.1' });
  const base = `http://127.0.0.1:${(h.app.server.address() as AddressInfo).port}/`;
  const browser: Browser = await chromium.launch({ executablePath: CHROMIUM, args: LAUNCH_ARGS });
  t.teardown(() => browser.close());

  // Uncaught page errors and CSP violations of each tab, checked when its test ends (see `finish`).
  const problems = new Map<Page, string[]>();

  /** A fresh tab with empty session storage, on the dashboard. */
  async function openPage(t: Test): Promise<Page> {
    const context = await browser.newContext();
    t.teardown(() => context.close());
    const page = await context.newPage();
    const seen: string[] = [];
    problems.set(page, seen);
    page.on('pageerror', (error) => seen.push(`page error: ${error.message}`));
    page.on('console', (message) => {
      // Chromium logs every 401/403 answer as "Failed to load resource"; those are expected here.
      if (message.type() === 'error' && !message.text().startsWith('Failed to load resource')) {
        seen.push(`console: ${message.text()}`);
      }
    });
    await page.goto(base);
    return page;
  }

  function finish(t: Test, page: Page): void {
    t.same(problems.get(page), [], 'no script errors or CSP violations');
  }

  await t.test('an operator signs in, sees the counts, runs, pauses and resumes tasks', async (t) => {
    // A failed job and an active one, for the two job tables.
    const failedId = await h.boss.send('limpar_recorrencias_antigas', { date: today }, { retryLimit: 0 });
    const [claimed] = await h.boss.fetch('limpar_recorrencias_antigas');
    if (failedId === null || claimed?.id !== failedId) throw new Error('could not claim the job to fail');
    await h.boss.fail('limpar_recorrencias_antigas', failedId, { message: 'boom' });
    const activeId = await h.boss.send('notificar_recorrencias_hold', { date: today });
    await h.boss.fetch('notificar_recorrencias_hold');

    const page = await openPage(t);
    await page.getByLabel('Admin token').waitFor();
    t.ok(await page.locator('#dashboard').isHidden(), 'nothing but the form before a token');
    await signIn(page, OPERATOR_TOKEN);

    const expected = await expectedCounts(h.url, today);
    t.ok(
      expected.due > 0 && expected.retrying > 0 && expected.attempts.length === 3,
      'the seed is non-trivial',
    );
    await waitForText(page.locator('#business-date'), exactly(today));
    await waitForText(stat(page, 'devidas_na_data'), exactly(expected.due));
    await waitForText(stat(page, 'aguardando_retentativa'), exactly(expected.retrying));
    await waitForText(
      stat(page, 'em_hold'),
      exactly(expected.byStatus.find((row) => row.status === 'hold')?.n ?? 0),
    );
    for (const status of ['ativo', 'hold', 'pausado', 'cancelado', 'concluido']) {
      const n = expected.byStatus.find((row) => row.status === status)?.n ?? 0;
      await waitForText(stat(page, `status-${status}`), exactly(n));
    }
    for (const outcome of ['aprovada', 'recusada', 'rejeitada', 'pendente']) {
      const row = expected.attempts.find((attempt) => attempt.status === outcome);
      const cells = page.locator(`#attempts tr[data-outcome="${outcome}"]`);
      await waitForText(cells.locator('[data-field="count"]'), exactly(row?.n ?? 0));
      await waitForText(cells.locator('[data-field="amount"]'), brl(row?.cents ?? 0));
    }
    await waitForText(page.locator('#failed-jobs tr[data-job] th'), exactly(failedId));
    await waitForText(page.locator('#active-jobs tr[data-job] th'), exactly(activeId ?? ''));
    await waitForText(queueCell(page, 'limpar_recorrencias_antigas', 'failed'), exactly(1));
    await waitForText(queueCell(page, 'processar_recorrencias_do_dia', 'queued'), exactly(0));

    await page.getByRole('button', { name: 'Run processar_recorrencias_do_dia' }).click();
    const message = await waitForText(
      actionMessage(page),
      /queued for \d{4}-\d\d-\d\d as job [0-9a-f-]{36}\.$/,
    );
    const jobId = /as job ([0-9a-f-]{36})/.exec(message)?.[1];
    const jobs = await jobsOf(h.url, 'processar_recorrencias_do_dia');
    t.same(
      jobs.map((job) => ({ id: job.id, state: job.state, data: job.data })),
      [{ id: jobId, state: 'created', data: { date: today, force: false } }],
      'the job the page names is in pgboss.job',
    );
    await waitForText(queueCell(page, 'processar_recorrencias_do_dia', 'queued'), exactly(1));
    await page.getByRole('button', { name: 'Run processar_recorrencias_do_dia' }).click();
    await waitForText(actionMessage(page), new RegExp(`already queued for ${today} as job ${jobId}`));

    await page.getByRole('button', { name: 'Pause retentar_cobrancas_falhadas' }).click();
    await waitForText(actionMessage(page), /^retentar_cobrancas_falhadas paused\.$/);
    await waitForText(scheduleState(page, 'retentar_cobrancas_falhadas'), /^paused$/);
    await waitForText(queueCell(page, 'retentar_cobrancas_falhadas', 'state'), /^paused$/);
    await page.getByRole('button', { name: 'Resume retentar_cobrancas_falhadas' }).click();
    await waitForText(actionMessage(page), /^retentar_cobrancas_falhadas resumed\.$/);
    await waitForText(scheduleState(page, 'retentar_cobrancas_falhadas'), /^active$/);
    finish(t, page);
  });

  await t.test('the live worker processes are listed, and their absence is said', async (t) => {
    const page = await openPage(t);
    await signIn(page, READ_TOKEN);
    await waitForText(page.locator('#workers td.empty'), /^No live worker: no charge or task runs/);
    // A worker process as pg-boss registers it: its work() calls, with the jobs each has in hand.
    const workers = [
      { id: 'w1', queue: 'cobrar_recorrencia', localConcurrency: 4, batchSize: 8, active: 5 },
      { id: 'w2', queue: 'processar_recorrencias_do_dia', localConcurrency: 1, batchSize: 1, active: 1 },
      { id: 'w3', queue: 'enviar_aviso_vendedor', localConcurrency: 1, batchSize: 1, active: 0 },
    ].map((worker) => ({
      ...worker,
      pollingIntervalSeconds: 2,
      lastFetchedOn: null,
      lastJobEndedOn: null,
      lastErrorOn: null,
    }));
    await query(
      h.url,
      `INSERT INTO pgboss.instance (id, name, host, pid, version, node_version, heartbeat_seconds, supervise,
         schedule, migrate, persist_queue_stats, persist_warnings, workers, started_on, heartbeat_on)
       VALUES (gen_random_uuid(), 'recorrencias-worker', 'worker-host-1', 4242, '12', 'v24', 10, true, false,
         false, false, false, $1::jsonb, now(), now())`,
      [JSON.stringify(workers)],
    );
    const row = page.locator('#workers tr[data-worker="worker-host-1:4242"]');
    await waitForText(row.locator('th'), exactly('worker-host-1'));
    await waitForText(row.locator('[data-field="queues"]'), exactly(3));
    await waitForText(row.locator('[data-field="charges"]'), exactly('4 × 8'));
    await waitForText(row.locator('[data-field="active"]'), exactly(6));
    t.ok(await page.locator('#workers td.empty').isHidden(), 'no empty-state line beside it');
    await query(h.url, `UPDATE pgboss.instance SET stopped_on = now() WHERE host = 'worker-host-1'`);
    await waitForText(page.locator('#workers td.empty'), /^No live worker/);
    finish(t, page);
  });

  await t.test('a refused token brings the form back with the reason, and is not kept', async (t) => {
    const page = await openPage(t);
    await signIn(page, 'not-a-valid-token');
    await waitForText(page.getByRole('alert').filter({ hasText: '401' }), /refused \(401\)/);
    await page.getByLabel('Admin token').waitFor();
    t.ok(await page.locator('#dashboard').isHidden(), 'no dashboard');
    t.equal(await page.evaluate(() => sessionStorage.length), 0, 'nothing in session storage');
    finish(t, page);
  });

  await t.test('a reload keeps the session; signing out forgets it', async (t) => {
    const page = await openPage(t);
    await signIn(page, OPERATOR_TOKEN);
    await waitForText(stat(page, 'devidas_na_data'), /^\d+$/);
    await page.reload();
    await waitForText(stat(page, 'devidas_na_data'), /^\d+$/);
    t.ok(await page.getByLabel('Admin token').isHidden(), 'no token form after the reload');
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByLabel('Admin token').waitFor();
    t.equal(await page.evaluate(() => sessionStorage.length), 0, 'the token is gone');
    finish(t, page);
  });

  await t.test('a read-only token sees the dashboard but cannot run a task (403)', async (t) => {
    const before = await jobsOf(h.url, 'processar_recorrencias_do_dia');
    const page = await openPage(t);
    await signIn(page, READ_TOKEN);
    await waitForText(stat(page, 'devidas_na_data'), /^\d+$/);
    await page.getByRole('button', { name: 'Run processar_recorrencias_do_dia' }).click();
    await waitForText(actionMessage(page), /^Not allowed \(403\): this token can only read\./);
    t.same(await jobsOf(h.url, 'processar_recorrencias_do_dia'), before, 'no job added');
    finish(t, page);
  });

  t.comment(`browser tests took ${Date.now() - started} ms`);
});
