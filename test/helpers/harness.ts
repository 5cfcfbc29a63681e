// An in-process charging harness for integration tests: a private migrated database, a slonik pool, a
// pg-boss instance, a fake gateway over real HTTP and the real HTTP client. Plus row factories and the
// ledger-versus-database check every charging test ends with.
import { PgBoss, type Job } from 'pg-boss';
import pino from 'pino';
import { sql } from 'slonik';
import type { Test } from 'tap';
import { z } from 'zod';
import { loadConfig, type Config } from '../../src/config.ts';
import { ensureGatewaySlots } from '../../src/db/gateway-slots.ts';
import { createDbPool, type DatabasePool } from '../../src/db/pool.ts';
import type { IsoDate } from '../../src/domain/dates.ts';
import {
  startFakeGateway,
  type FakeGateway,
  type FakeGatewayOptions,
} from '../../src/gateway/fake-gateway.ts';
import { createHttpGateway } from '../../src/gateway/http-gateway.ts';
import { createBoss } from '../../src/queue/boss.ts';
import { CHARGE_QUEUE } from '../../src/queue/task-names.ts';
import { enqueueChargeJobs, type ChargeJobPayload } from '../../src/tasks/charge/charge-jobs.ts';
import {
  chargeRecurrence,
  type ChargeDeps,
  type ChargeResult,
} from '../../src/tasks/charge/charge-recurrence.ts';
import type { TaskDeps } from '../../src/tasks/task.ts';
import { createMigratedDatabase, query } from './database.ts';
import type { Actor } from '../../src/ops/actor.ts';

export const silentLog = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });

export type Harness = {
  url: string;
  config: Config;
  pool: DatabasePool;
  boss: PgBoss;
  gateway: FakeGateway;
  deps: ChargeDeps & TaskDeps;
  /** Sets the wall clock the code under test sees. */
  setNow(date: Date): void;
  /** Claims the next charge job(s), exactly as a worker would. */
  fetchChargeJobs(limit?: number): Promise<Job<ChargeJobPayload>[]>;
};

export async function createHarness(
  t: Test,
  options: { env?: Record<string, string>; gateway?: FakeGatewayOptions; url?: string } = {},
): Promise<Harness> {
  const url = options.url ?? (await createMigratedDatabase(t));
  const gateway = await startFakeGateway({ port: 0, ...options.gateway });
  t.teardown(() => gateway.close());
  const config = loadConfig({
    DATABASE_URL: url,
    GATEWAY_URL: gateway.url,
    GATEWAY_TIMEOUT_MS: '1000',
    LOG_LEVEL: 'silent',
    ...options.env,
  });
  const pool = await createDbPool(url, { maxConnections: 8, applicationName: 'test' });
  t.teardown(() => pool.end());
  // What a worker does at start: create the slots of the gateway concurrency cap.
  if (config.gateway.maxConcurrency > 0) await ensureGatewaySlots(pool, config.gateway.maxConcurrency);
  const boss = createBoss(config, url, 'cli', silentLog);
  await boss.start();
  t.teardown(() => boss.stop({ graceful: false, close: true }));
  let now = new Date();
  const deps = {
    config,
    pool,
    boss,
    log: silentLog,
    gateway: createHttpGateway({ url: gateway.url, timeoutMs: config.gateway.timeoutMs, log: silentLog }),
    now: () => now,
  };
  return {
    url,
    config,
    pool,
    boss,
    gateway,
    deps,
    setNow: (date) => {
      now = date;
    },
    // fetch() hands out jobs without the abort signal work() adds; give each one, as a worker would have.
    fetchChargeJobs: async (limit = 1) =>
      (await boss.fetch<ChargeJobPayload>(CHARGE_QUEUE, { batchSize: limit })).map((job) => ({
        ...job,
        signal: new AbortController().signal,
      })),
  };
}

export type RecurrenceOverrides = {
  vendedor_id?: string;
  cartao_token?: string;
  bandeira?: string;
  valor_centavos?: number;
  periodicidade?: 'semanal' | 'mensal' | 'trimestral' | 'semestral' | 'anual';
  dia_ancora?: number | null;
  proxima_cobranca: IsoDate;
  total_ciclos?: number | null;
  ciclos_cobrados?: number;
  status?: 'ativo' | 'hold' | 'pausado' | 'cancelado' | 'concluido';
  proxima_tentativa?: IsoDate | null;
  falhas_consecutivas?: number;
  motivo_hold?: string | null;
  hold_em?: Date | null;
  encerrada_em?: Date | null;
};

/** Who a test's direct call to an admin operation audits as. */
export function testActor(name: string): Actor {
  return { name, requestId: null, source: 'test' };
}

/** Inserts one recurrence with sensible defaults (monthly, anchored on the due date's day, R$ 49,90). */
export async function insertRecurrence(pool: DatabasePool, row: RecurrenceOverrides): Promise<number> {
  const periodicidade = row.periodicidade ?? 'mensal';
  const anchor =
    row.dia_ancora !== undefined
      ? row.dia_ancora
      : periodicidade === 'semanal'
        ? null
        : Number(row.proxima_cobranca.slice(8, 10));
  const status = row.status ?? 'ativo';
  // A hold is dated (the table checks it): now, unless the test gives its date.
  const holdEm = row.hold_em !== undefined ? row.hold_em : status === 'hold' ? new Date() : null;
  return pool.oneFirst(sql.type(z.object({ id: z.number() }))`
    INSERT INTO checkout_recorrencias (vendedor_id, cartao_token, bandeira, valor_centavos, periodicidade, dia_ancora,
      proxima_cobranca, total_ciclos, ciclos_cobrados, status, proxima_tentativa, falhas_consecutivas, motivo_hold,
      hold_em, encerrada_em)
    VALUES (${row.vendedor_id ?? 'vendedor-1'}, ${row.cartao_token ?? 'tok_aprova_1'}, ${row.bandeira ?? 'visa'},
      ${row.valor_centavos ?? 4990}, ${periodicidade}, ${anchor}, ${row.proxima_cobranca}::date, ${row.total_ciclos ?? null},
      ${row.ciclos_cobrados ?? 0}, ${status}, ${row.proxima_tentativa ?? null}::date, ${row.falhas_consecutivas ?? 0},
      ${row.motivo_hold ?? (status === 'hold' ? 'teste' : null)},
      ${holdEm === null ? null : sql.timestamp(holdEm)},
      ${row.encerrada_em === undefined || row.encerrada_em === null ? null : sql.timestamp(row.encerrada_em)})
    RETURNING id`);
}

export type RecurrenceState = {
  status: string;
  proxima_cobranca: string;
  proxima_tentativa: string | null;
  falhas_consecutivas: number;
  ciclos_cobrados: number;
  motivo_hold: string | null;
  pausada_desde: string | null;
};

export async function recurrenceState(url: string, id: number): Promise<RecurrenceState> {
  const [row] = await query<RecurrenceState>(
    url,
    `SELECT status, proxima_cobranca::text, proxima_tentativa::text, falhas_consecutivas, ciclos_cobrados, motivo_hold,
       pausada_desde::text
     FROM checkout_recorrencias WHERE id = $1`,
    [id],
  );
  if (row === undefined) throw new Error(`recurrence ${id} not found`);
  return row;
}

export type AttemptRow = {
  id: number;
  ciclo: string;
  tentativa: number;
  chave_idempotencia: string;
  status: string;
  valor_centavos: number;
  codigo_recusa: string | null;
};

export async function attemptsOf(url: string, id: number): Promise<AttemptRow[]> {
  return query<AttemptRow>(
    url,
    `SELECT id::int, ciclo::text, tentativa, chave_idempotencia, status, valor_centavos::int, codigo_recusa
     FROM checkout_recorrencia_cobrancas WHERE recorrencia_id = $1 ORDER BY ciclo, tentativa`,
    [id],
  );
}

/** The cycles of `id` recorded as skipped (checkout_recorrencia_ciclos_pulados), oldest first. */
export async function skippedCyclesOf(
  url: string,
  id: number,
): Promise<Array<{ ciclo: string; motivo: string }>> {
  return query<{ ciclo: string; motivo: string }>(
    url,
    'SELECT ciclo::text, motivo FROM checkout_recorrencia_ciclos_pulados WHERE recorrencia_id = $1 ORDER BY ciclo',
    [id],
  );
}

/** Enqueues the charge job for `id` on `date`, claims it like a worker, runs the protocol. */
export async function chargeOnce(
  h: Harness,
  id: number,
  date: IsoDate,
  motivo: 'agendada' | 'retentativa' = 'agendada',
): Promise<{ result: ChargeResult; jobId: string }> {
  await enqueueChargeJobs(h.boss, [{ recorrenciaId: id, dataNegocio: date, motivo }]);
  const [job] = await h.fetchChargeJobs();
  if (job === undefined) throw new Error('no charge job to fetch');
  return { result: await chargeRecurrence(h.deps, job), jobId: job.id };
}

/**
 * Ends a job as failed, as pg-boss does once its retries run out: for tests that run the protocol on a job and
 * then need it no longer active (its worker settled it), without waiting out the retries.
 */
export async function endJob(url: string, id: string): Promise<void> {
  await query(url, `UPDATE pgboss.job SET state = 'failed', completed_on = now() WHERE id = $1`, [id]);
}

export async function jobState(url: string, id: string): Promise<string | undefined> {
  const [row] = await query<{ state: string }>(url, 'SELECT state FROM pgboss.job WHERE id = $1', [id]);
  return row?.state;
}

/**
 * The invariants of the fault model, checked against the fake gateway's ledger: at most one approved charge
 * per (recurrence, cycle) at the gateway, one ledger entry per key, and the database's approved attempts
 * equal the gateway's approved charges, key by key and in total amount.
 */
export async function assertLedgerAgrees(t: Test, url: string, gateway: FakeGateway): Promise<void> {
  const ledger = gateway.ledger();
  const approved = ledger.filter((entry) => entry.status === 'approved');
  const perCycle = new Map<string, number>();
  for (const entry of approved) {
    const cycle = `${entry.recorrenciaId}:${entry.ciclo}`;
    perCycle.set(cycle, (perCycle.get(cycle) ?? 0) + 1);
  }
  t.same(
    [...perCycle.values()].filter((n) => n > 1),
    [],
    'at most one approved gateway charge per recurrence and cycle',
  );
  const keys = ledger.map((entry) => entry.key);
  t.equal(new Set(keys).size, keys.length, 'one ledger entry per idempotency key');
  const rows = await query<{ chave_idempotencia: string; valor_centavos: number }>(
    url,
    `SELECT chave_idempotencia, valor_centavos::int FROM checkout_recorrencia_cobrancas WHERE status = 'aprovada'
     UNION ALL SELECT chave_idempotencia, valor_centavos::int FROM checkout_recorrencia_cobrancas_arquivo WHERE status = 'aprovada'
`,
  );
  // Both sides sorted here: Postgres collations may order punctuation differently from JavaScript.
  t.same(
    rows.map((row) => `${row.chave_idempotencia}=${row.valor_centavos}`).sort(),
    approved.map((entry) => `${entry.key}=${entry.amountCents}`).sort(),
    'database approvals equal gateway approvals, key by key and amount by amount',
  );
}
