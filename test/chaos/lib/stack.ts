// One scenario's system under test: a fresh database cloned from the cluster's template, the fake gateway
// with a ledger file, and the roles under a supervisor. Seeds recurrences, triggers runs through the admin
// API, waits for quiet, applies the documented recovery path (redrive dead letters) and takes the snapshot.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { freePort } from '../../../src/dev/embedded-postgres.ts';
import type { Periodicity } from '../../../src/domain/calendar.ts';
import type { IsoDate } from '../../../src/domain/dates.ts';
import { query, type Cluster } from './cluster.ts';
import { ADMIN_TOKEN, CHARGE_RETRY_LIMIT, serviceEnv } from './env.ts';
import { gatewayClient, type GatewayClient } from './gateway-client.ts';
import { createSupervisor, type Slot, type Supervisor } from './supervisor.ts';
import { until } from './wait.ts';

export type RecurrenceSpec = {
  token: string;
  amountCents: number;
  periodicidade: Periodicity;
  diaAncora: number | null;
  due: IsoDate;
  onHold: boolean;
};

export type Stack = {
  name: string;
  url: string;
  cluster: Cluster;
  sup: Supervisor;
  gateway: GatewayClient;
  runDir: string;
  /** Harness-injected faults by kind (crash points and gateway faults are added from their sources). */
  faults: Map<string, number>;
  note(kind: string, n?: number): void;
  /** Starts a role (worker, scheduler, admin) and waits until it says it started. */
  startRole(
    name: string,
    role: string,
    extra?: { arms?: string[]; env?: Record<string, string>; wait?: boolean },
  ): Promise<Slot>;
  seed(specs: RecurrenceSpec[]): Promise<Array<{ id: number; spec: RecurrenceSpec }>>;
  /** POST /tasks/:task/run through the admin server (what an operator does). */
  runTask(task: string, date: IsoDate, force?: boolean): Promise<void>;
  /**
   * POST /recorrencias/:id/pausar|retomar|cancelar through the admin server, as the checkout does, retried
   * until it answers (a retried transition answers 200 without changing anything); returns the status it
   * answered, or the one it refused the transition in (409).
   */
  transition(id: number, transition: 'pausar' | 'retomar' | 'cancelar'): Promise<CheckoutAnswer>;
  /** PATCH /recorrencias/:id (amount, card), the same way. */
  change(id: number, fields: Record<string, unknown>): Promise<CheckoutAnswer>;
  /** POST /recorrencias/:id/reativar (an operator taking it off hold), the same way. */
  reactivate(id: number): Promise<CheckoutAnswer>;
  /** Number of jobs not yet terminal, outside the dead-letter queue. */
  busyJobs(): Promise<number>;
  /** Waits until every job is terminal and no attempt is pending, redriving dead letters; returns when. */
  settle(timeoutMs: number): Promise<{ quietAt: number; redriven: number }>;
  stop(): Promise<void>;
};

/** The recurrence's status after a checkout call, or the one it refused the call in (409). */
export type CheckoutAnswer = { status: string; refused?: true };
/** A PATCH or transition answers the recurrence; reativar answers its id and status. */
type Changed = { recorrencia: { status: string } } | { status: string };

/** The line each role logs once it is up. */
export const STARTED: Record<string, string> = {
  worker: 'worker started',
  scheduler: 'scheduler started',
  admin: 'admin server listening',
  'fake-gateway': 'fake gateway listening',
};

const live = new Set<Stack>();
/** Supervisors of stacks still being built: one whose set-up threw has processes (and restarts) of its own. */
const starting = new Map<Supervisor, Cluster>();

/** Stops every stack still running on `cluster` (a scenario that threw leaves its processes behind). */
export async function stopStacksOn(cluster: Cluster): Promise<void> {
  const unfinished = [...starting].filter(([, of]) => of === cluster).map(([sup]) => sup);
  for (const sup of unfinished) starting.delete(sup);
  await Promise.all([
    ...[...live].filter((stack) => stack.cluster === cluster).map((stack) => stack.stop()),
    ...unfinished.map((sup) => sup.stopAll()),
  ]);
}

export async function createStack(options: {
  cluster: Cluster;
  name: string;
  runDir: string;
  gateway?: { latencyMs?: number; declineRate?: number; seed?: number };
  workerEnv?: Record<string, string>;
}): Promise<Stack> {
  const { cluster, name } = options;
  const runDir = join(options.runDir, name);
  await mkdir(runDir, { recursive: true });
  const url = await cluster.createDatabase(name);
  const sup = createSupervisor({ runDir });
  starting.set(sup, cluster);
  const faults = new Map<string, number>();
  const note = (kind: string, n = 1) => faults.set(kind, (faults.get(kind) ?? 0) + n);

  const gatewayPort = await freePort();
  const ledgerFile = join(runDir, 'ledger.jsonl');
  const gatewaySlot = sup.start('gateway', {
    role: 'fake-gateway',
    env: {
      LOG_FORMAT: 'json',
      // debug: the fake logs each fault it applies with the request's position.
      LOG_LEVEL: 'debug',
      FAKE_GATEWAY_PORT: String(gatewayPort),
      FAKE_GATEWAY_LEDGER_FILE: ledgerFile,
      FAKE_GATEWAY_LATENCY_MS: String(options.gateway?.latencyMs ?? 30),
      FAKE_GATEWAY_DECLINE_RATE: String(options.gateway?.declineRate ?? 0),
      FAKE_GATEWAY_SEED: String(options.gateway?.seed ?? 1),
    },
  });
  await gatewaySlot.waitForLog((l) => l.msg === STARTED['fake-gateway'], 20_000);
  const gateway = gatewayClient(`http://127.0.0.1:${gatewayPort}`, ledgerFile);
  const adminPort = await freePort();
  const env = {
    ...serviceEnv(url),
    GATEWAY_URL: gateway.url,
    ADMIN_TOKENS: `chaos:${ADMIN_TOKEN}`,
    ADMIN_HOST: '127.0.0.1',
    ADMIN_PORT: String(adminPort),
    WORKER_CONCURRENCY: '2',
  };
  const adminUrl = `http://127.0.0.1:${adminPort}`;

  const startRole: Stack['startRole'] = async (slotName, role, extra = {}) => {
    const slot = sup.start(slotName, {
      role,
      env: { ...env, ...(role === 'worker' ? options.workerEnv : {}), ...extra.env },
      ...(extra.arms === undefined ? {} : { arms: extra.arms }),
    });
    if (extra.wait !== false) await slot.waitForLog((l) => l.msg === STARTED[role], 60_000);
    return slot;
  };

  /** One admin request: its HTTP status and parsed body (throws only when the server did not answer). */
  const request = async (method: string, path: string, body?: unknown) => {
    const response = await fetch(`${adminUrl}${path}`, {
      method,
      signal: AbortSignal.timeout(10_000),
      headers: {
        authorization: `Bearer ${ADMIN_TOKEN}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await response.text();
    return { status: response.status, text, json: () => JSON.parse(text) as unknown };
  };
  const admin = async (method: string, path: string, body?: unknown) => {
    const answer = await request(method, path, body);
    if (answer.status >= 300)
      throw new Error(`admin ${method} ${path}: HTTP ${answer.status} ${answer.text}`);
    return answer.json();
  };

  /** A checkout call retried until answered (the admin server may be down: killed, or Postgres restarting). */
  const checkoutCall = (what: string, method: string, path: string, body?: unknown) =>
    until(
      what,
      async (): Promise<CheckoutAnswer | undefined> => {
        const answer = await request(method, path, body).catch(() => undefined);
        if (answer?.status === 200) {
          const changed = answer.json() as Changed;
          return { status: 'recorrencia' in changed ? changed.recorrencia.status : changed.status };
        }
        // Refused: the recurrence is in a state the call does not apply to (on hold, say, or cancelled).
        if (answer?.status === 409)
          return { status: (answer.json() as { status: string }).status, refused: true };
        return undefined;
      },
      30_000,
      250,
    );

  const busyJobs = async () =>
    (
      await query<{ n: number }>(
        url,
        `SELECT count(*)::int AS n FROM pgboss.job
         WHERE name NOT LIKE '\\_\\_pgboss%' AND name <> 'cobrar_recorrencia_dlq' AND state NOT IN ('completed', 'failed', 'cancelled')`,
      )
    )[0]?.n ?? 0;

  const leftovers = async () => {
    const [row] = await query<{ pending: number; dead: string[] }>(
      url,
      `SELECT (SELECT count(*)::int FROM checkout_recorrencia_cobrancas WHERE status = 'pendente') AS pending,
              (SELECT coalesce(array_agg(id::text), '{}') FROM pgboss.job
               WHERE name = 'cobrar_recorrencia_dlq' AND state = 'created') AS dead`,
    );
    return row ?? { pending: 0, dead: [] };
  };

  const stack: Stack = {
    name,
    url,
    cluster,
    sup,
    gateway,
    runDir,
    faults,
    note,
    startRole,
    seed: async (specs) => {
      const rows = await query<{ id: number }>(
        url,
        `INSERT INTO checkout_recorrencias (vendedor_id, cartao_token, bandeira, valor_centavos, periodicidade, dia_ancora,
           proxima_cobranca, status, motivo_hold, hold_em)
         SELECT 'vendedor-' || (i % 5), token, 'visa', amount, periodicidade, ancora, due, status,
           CASE WHEN status = 'hold' THEN 'chaos: em hold desde o início' END,
           CASE WHEN status = 'hold' THEN now() - interval '1 hour' END
         FROM unnest($1::text[], $2::bigint[], $3::text[], $4::int[], $5::date[], $6::text[])
           WITH ORDINALITY AS s(token, amount, periodicidade, ancora, due, status, i)
         ORDER BY i RETURNING id`,
        [
          specs.map((s) => s.token),
          specs.map((s) => s.amountCents),
          specs.map((s) => s.periodicidade),
          specs.map((s) => s.diaAncora),
          specs.map((s) => s.due),
          specs.map((s) => (s.onHold ? 'hold' : 'ativo')),
        ],
      );
      return rows.map((row, i) => ({ id: Number(row.id), spec: specs[i] as RecurrenceSpec }));
    },
    runTask: async (task, date, force = false) => {
      await until(
        `admin to accept a run of ${task}`,
        async () =>
          (await admin('POST', `/tasks/${task}/run`, { date, force, allowFutureDate: true })) ?? undefined,
        30_000,
        500,
      );
    },
    transition: (id, transition) =>
      checkoutCall(`admin to ${transition} recurrence ${id}`, 'POST', `/recorrencias/${id}/${transition}`),
    change: (id, fields) =>
      checkoutCall(`admin to change recurrence ${id}`, 'PATCH', `/recorrencias/${id}`, fields),
    reactivate: (id) =>
      checkoutCall(`admin to reactivate recurrence ${id}`, 'POST', `/recorrencias/${id}/reativar`),
    busyJobs,
    settle: async (timeoutMs) => {
      const deadline = Date.now() + timeoutMs;
      let redriven = 0;
      for (;;) {
        await until(
          'every job to be terminal',
          async () => ((await busyJobs()) === 0 ? true : undefined),
          Math.max(1, deadline - Date.now()),
          250,
        );
        const left = await leftovers();
        if (left.dead.length === 0 && left.pending === 0) return { quietAt: Date.now(), redriven };
        if (left.dead.length === 0) {
          // A pending attempt with no job left to resume it and nothing dead-lettered: a lost cycle. Let the
          // checker report it rather than wait forever.
          if (Date.now() > deadline) return { quietAt: Date.now(), redriven };
          await until(
            'a job for the pending attempt',
            async () => ((await busyJobs()) > 0 || (await leftovers()).pending === 0 ? true : undefined),
            Math.min(5_000, Math.max(1, deadline - Date.now())),
            250,
          ).catch(() => undefined);
          if ((await busyJobs()) === 0 && (await leftovers()).pending > 0)
            return { quietAt: Date.now(), redriven };
          continue;
        }
        // The runbook's recovery for dead-lettered charges: send each back (it resumes with the same key).
        for (const id of left.dead) await admin('POST', `/jobs/${id}/retry`);
        redriven += left.dead.length;
        note('recovery:redrive_dead_letter', left.dead.length);
      }
    },
    stop: async () => {
      live.delete(stack);
      await sup.stopAll();
    },
  };
  starting.delete(sup);
  live.add(stack);
  return stack;
}

/** pgboss / config limits the checker compares with. */
export const LIMITS = { chargeRetryLimit: CHARGE_RETRY_LIMIT, maxDeclinesBeforeHold: 4 };
