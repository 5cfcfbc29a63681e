// The dashboard's behaviour: asks for a token (kept in sessionStorage only), reads the admin API every few
// seconds and renders it, and runs, pauses or resumes the periodic tasks. Server data only ever reaches the
// DOM as text (textContent / text nodes), never as markup.
const REFRESH_MS = 5_000;
const TOKEN_KEY = 'recorrencias.token';

const $ = (id) => {
  const element = document.getElementById(id);
  if (element === null) throw new Error(`dashboard.html has no #${id}`);
  return element;
};

const brl = new Intl.NumberFormat('pt-BR', { style: 'currency', currency: 'BRL' });
const OUTCOMES = [
  ['aprovada', 'Approved'],
  ['recusada', 'Declined'],
  ['rejeitada', 'Rejected (request refused)'],
  ['pendente', 'Pending'],
];

/** The service's time zone (from /schedules), so every time on the page reads as the operators' local time. */
let timeZone = Intl.DateTimeFormat().resolvedOptions().timeZone;

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(method, path, body) {
  const response = await fetch(path, {
    method,
    cache: 'no-store',
    headers: {
      authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY) ?? ''}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const payload = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, payload?.message ?? response.statusText);
  return payload;
}

/** An element with attributes and children; strings become text nodes, so they are never parsed as HTML. */
function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, String(value));
  element.append(...children.map((child) => (child instanceof Node ? child : String(child ?? ''))));
  return element;
}

function formatTime(iso) {
  if (iso === null || iso === undefined) return '—';
  const date = new Date(iso);
  // sv-SE writes "2025-06-01 14:03:05", like the API's own local times.
  return date.toLocaleString('sv-SE', { timeZone });
}

const formatCents = (cents) => brl.format(cents / 100);

function emptyRow(columns, text) {
  return h('tr', {}, h('td', { colspan: columns, class: 'empty' }, text));
}

// Rendering replaces a table's rows, which would drop the keyboard focus of a button inside it every few
// seconds; sections are therefore re-rendered only when their data changed.
const rendered = new Map();
function update(key, data, render) {
  const json = JSON.stringify(data);
  if (rendered.get(key) === json) return;
  rendered.set(key, json);
  render(data);
}

function renderStats(stats) {
  $('business-date').textContent = stats.data_negocio;
  for (const dd of document.querySelectorAll('dd[data-stat]')) {
    dd.textContent = String(stats[dd.dataset.stat] ?? '—');
  }
  $('by-status').replaceChildren(
    ...Object.entries(stats.por_status).map(([status, count]) =>
      h('div', {}, h('dt', {}, status), h('dd', { 'data-stat': `status-${status}` }, count)),
    ),
  );
  $('attempts').replaceChildren(
    ...OUTCOMES.map(([key, label]) => {
      const totals = stats.tentativas_na_data[key];
      return h(
        'tr',
        { 'data-outcome': key },
        h('th', { scope: 'row' }, label),
        h('td', { 'data-field': 'count' }, totals.quantidade),
        h('td', { 'data-field': 'amount' }, formatCents(totals.valor_centavos)),
      );
    }),
  );
}

function actionButton(action, label, task) {
  // The visible text is the verb; the task name completes the accessible name ("Run processar_...").
  return h(
    'button',
    { type: 'button', 'data-action': action, 'data-task': task },
    label,
    h('span', { class: 'visually-hidden' }, ` ${task}`),
  );
}

function renderSchedules(schedules) {
  $('schedules').replaceChildren(
    ...schedules.map((schedule) => {
      const last = schedule.lastRun;
      return h(
        'tr',
        { 'data-task': schedule.task },
        h('th', { scope: 'row' }, schedule.task),
        h('td', {}, h('code', {}, schedule.cron)),
        h('td', {}, schedule.nextRuns.map((run) => run.local).join(', ') || '—'),
        h(
          'td',
          {},
          last === null
            ? 'never'
            : `${formatTime(last.iniciada_em)} · ${last.status}${
                last.status === 'executando' && !last.running ? ', its process ended' : ''
              } (business date ${last.data_negocio})`,
        ),
        h('td', { 'data-field': 'state' }, schedule.paused ? 'paused' : 'active'),
        h(
          'td',
          { class: 'actions' },
          actionButton('run', 'Run', schedule.task),
          schedule.paused
            ? actionButton('resume', 'Resume', schedule.task)
            : actionButton('pause', 'Pause', schedule.task),
        ),
      );
    }),
  );
}

const QUEUE_COUNTS = ['queued', 'deferred', 'retry', 'active', 'failed'];

function renderQueues(queues) {
  $('queues').replaceChildren(
    ...queues.map((queue) =>
      h(
        'tr',
        { 'data-queue': queue.queue },
        h('th', { scope: 'row' }, queue.queue),
        ...QUEUE_COUNTS.map((state) => h('td', { 'data-field': state }, queue.counts[state])),
        h('td', { 'data-field': 'deadLettered' }, queue.deadLettered ?? '—'),
        h('td', { 'data-field': 'state' }, queue.paused ? 'paused' : 'active'),
      ),
    ),
  );
}

const CHARGE_QUEUE = 'cobrar_recorrencia';

/** The live worker processes, from the queues' registered workers (GET /tasks): one row per host and pid. */
function workerProcesses(tasks) {
  const processes = new Map();
  for (const task of tasks) {
    for (const worker of task.workers) {
      const key = `${worker.host}:${worker.pid}`;
      const entry = processes.get(key) ?? {
        key,
        host: worker.host,
        pid: worker.pid,
        queues: 0,
        charges: '—',
        active: 0,
      };
      entry.queues += 1;
      entry.active += worker.active;
      if (task.name === CHARGE_QUEUE) entry.charges = `${worker.localConcurrency} × ${worker.batchSize}`;
      processes.set(key, entry);
    }
  }
  return [...processes.values()].sort((a, b) => a.key.localeCompare(b.key));
}

function renderWorkers(processes) {
  $('workers').replaceChildren(
    ...(processes.length === 0
      ? [
          emptyRow(
            5,
            'No live worker: no charge or task runs until one starts (a worker is listed from its first heartbeat, up to 10 s after it starts).',
          ),
        ]
      : processes.map((worker) =>
          h(
            'tr',
            { 'data-worker': worker.key },
            h('th', { scope: 'row' }, worker.host),
            h('td', { 'data-field': 'pid' }, worker.pid),
            h('td', { 'data-field': 'queues' }, worker.queues),
            h('td', { 'data-field': 'charges' }, worker.charges),
            h('td', { 'data-field': 'active' }, worker.active),
          ),
        )),
  );
}

function renderJobs(tbodyId, jobs, columns, emptyText) {
  $(tbodyId).replaceChildren(
    ...(jobs.length === 0
      ? [emptyRow(columns.length + 1, emptyText)]
      : jobs.map((job) =>
          h(
            'tr',
            { 'data-job': job.id },
            h('th', { scope: 'row' }, h('code', {}, job.id)),
            ...columns.map((column) => h('td', {}, column(job))),
          ),
        )),
  );
}

function renderActive(jobs) {
  renderJobs(
    'active-jobs',
    jobs,
    [
      (job) => job.queue,
      (job) => formatTime(job.started_on),
      (job) => `${job.retry_count + 1} of ${job.retry_limit + 1}`,
    ],
    'No active jobs.',
  );
}

function renderFailed(jobs) {
  renderJobs(
    'failed-jobs',
    jobs,
    [
      (job) => job.queue,
      (job) => formatTime(job.created_on),
      (job) => formatTime(job.completed_on),
      (job) => job.retry_count + 1,
    ],
    'No failed jobs.',
  );
}

function show(view) {
  $('login').hidden = view !== 'login';
  $('dashboard').hidden = view !== 'dashboard';
  $('sign-out').hidden = view !== 'dashboard';
}

// Each refresh takes a number; answers to an older refresh (or to one from before a sign-out) are dropped.
let latest = 0;
let timer;

async function refresh() {
  const mine = ++latest;
  try {
    const [schedules, queues, tasks, active, failed, stats] = await Promise.all([
      api('GET', '/schedules'),
      api('GET', '/queues'),
      api('GET', '/tasks'),
      api('GET', '/jobs?state=active&limit=20'),
      api('GET', '/jobs?state=failed&limit=10'),
      api('GET', '/recorrencias/stats'),
    ]);
    if (mine !== latest) return;
    timeZone = schedules.schedules[0]?.timeZone ?? timeZone;
    update('stats', stats, renderStats);
    update('schedules', schedules.schedules, renderSchedules);
    update('queues', queues.queues, renderQueues);
    update('workers', workerProcesses(tasks.tasks), renderWorkers);
    update('active', active.jobs, renderActive);
    update('failed', failed.jobs, renderFailed);
    $('load-error').textContent = '';
    $('refresh-status').textContent =
      `Updated ${formatTime(new Date())} (${timeZone}), every ${REFRESH_MS / 1000} s`;
    show('dashboard');
  } catch (error) {
    if (mine !== latest) return;
    if (error.status === 401) {
      signOut('That token was refused (401): enter a valid admin token.');
      return;
    }
    $('load-error').textContent = `Could not refresh the dashboard: ${error.message}`;
  }
  clearTimeout(timer);
  timer = setTimeout(refresh, REFRESH_MS);
}

function signOut(message = '') {
  latest += 1;
  clearTimeout(timer);
  sessionStorage.removeItem(TOKEN_KEY);
  rendered.clear();
  $('action-message').textContent = '';
  $('load-error').textContent = '';
  $('refresh-status').textContent = '';
  $('login-error').textContent = message;
  show('login');
  $('token').focus();
}

function say(message, isError = false) {
  const element = $('action-message');
  element.textContent = message;
  element.classList.toggle('error', isError);
}

function describe(action, task, answer) {
  if (action === 'pause') return `${task} paused${answer.changed ? '' : ' (it already was)'}.`;
  if (action === 'resume') return `${task} resumed${answer.changed ? '' : ' (it was not paused)'}.`;
  if (answer.status === 'queued') return `${task} queued for ${answer.date} as job ${answer.jobId}.`;
  if (answer.status === 'already_queued')
    return `${task} is already queued for ${answer.date} as job ${answer.jobId}.`;
  return `${task} already succeeded for ${answer.date} (run ${answer.run.id}); nothing was queued.`;
}

async function act(button) {
  const { action, task } = button.dataset;
  button.disabled = true;
  try {
    const answer = await api('POST', `/tasks/${encodeURIComponent(task)}/${action}`, {});
    say(describe(action, task, answer));
  } catch (error) {
    if (error.status === 401) {
      signOut('That token was refused (401): enter a valid admin token.');
      return;
    }
    if (error.status === 403) {
      say(
        `Not allowed (403): this token can only read. To ${action} ${task}, sign in with an operator token.`,
        true,
      );
    } else {
      say(`Could not ${action} ${task}: ${error.message}`, true);
    }
  } finally {
    button.disabled = false;
  }
  await refresh();
}

$('login-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const input = $('token');
  sessionStorage.setItem(TOKEN_KEY, input.value.trim());
  input.value = '';
  $('login-error').textContent = '';
  void refresh();
});

$('sign-out').addEventListener('click', () => signOut());

$('schedules').addEventListener('click', (event) => {
  const button = event.target.closest('button[data-action]');
  if (button !== null) void act(button);
});

if (sessionStorage.getItem(TOKEN_KEY) === null) show('login');
else void refresh();
