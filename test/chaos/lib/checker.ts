// The invariants of the fault model (shared/notes/reliability.md), checked on a snapshot of the end state:
// the fake gateway's ledger, the database's recurrences, attempts and jobs, and every process's exit and
// logs. Pure: it only reads the snapshot, so its unit test can feed it doctored data and watch it fail.
import { nextCycle, type Periodicity } from '../../../src/domain/calendar.ts';
import type { IsoDate } from '../../../src/domain/dates.ts';
import { attemptKey } from '../../../src/domain/identifiers.ts';
import type { LedgerEntry } from './gateway-client.ts';
import type { ExitRecord } from './supervisor.ts';

export type RecurrenceRow = {
  id: number;
  status: string;
  periodicidade: Periodicity;
  dia_ancora: number | null;
  proxima_cobranca: IsoDate;
  proxima_tentativa: IsoDate | null;
  ciclos_cobrados: number;
  falhas_consecutivas: number;
  motivo_hold: string | null;
  /** Epoch ms. */
  hold_em: number | null;
};

export type SeededRecurrence = {
  id: number;
  proxima_cobranca: IsoDate;
  status: string;
  ciclos_cobrados: number;
};

export type AttemptRow = {
  id: number;
  recorrencia_id: number;
  ciclo: IsoDate;
  tentativa: number;
  chave_idempotencia: string;
  status: 'pendente' | 'aprovada' | 'recusada' | 'rejeitada';
  valor_centavos: number;
  codigo_recusa: string | null;
  recusa_reversivel: boolean | null;
  /** The card token the attempt sends (copied from the recurrence when the attempt was created). */
  cartao_token: string;
  /** Epoch ms: when phase 1 (or a retry's start) created the attempt, under the recurrence's row lock. */
  criado_em: number;
};

/**
 * A recurrence the checkout paused or cancelled during the run, as the harness saw it (epoch ms): `from` once
 * pausar/cancelar had answered (so it had committed), `until` before retomar was first sent, null when it
 * stayed paused or cancelled. No attempt may be created between the two: phase 1 skips a recurrence that is
 * not active (a charge already in flight finishes).
 */
export type StopWindow = {
  recorrenciaId: number;
  status: 'pausado' | 'cancelado';
  from: number;
  until: number | null;
};

/**
 * A change of a recurrence's amount or card the checkout made during the run (PATCH): `at` once it had
 * answered (epoch ms), with the terms the recurrence carries from then on. Every attempt created after it
 * carries them; one created before (in flight, or resumed with its own key) keeps its own.
 */
export type TermsChange = { recorrenciaId: number; at: number; valor_centavos: number; cartao_token: string };

export type JobRow = { id: string; name: string; state: string; retry_count: number };

export type ProcessLog = {
  slot: string;
  incarnation: number;
  stderr: string;
  fatal: string[];
  /** Whether this incarnation logged that it had started (worker started, scheduler started, ...). */
  started: boolean;
};

export type Snapshot = {
  ledger: LedgerEntry[];
  seeded: SeededRecurrence[];
  recurrences: RecurrenceRow[];
  attempts: AttemptRow[];
  jobs: JobRow[];
  exits: ExitRecord[];
  logs: ProcessLog[];
  /** The latest business date any run of the scenario used: a cycle due on or before it must be settled. */
  lastBusinessDate: IsoDate;
  /** The pauses and cancellations the checkout made during the run (none in most scenarios). */
  stops: StopWindow[];
  /** The changes of amount or card the checkout made during the run (at most one per recurrence). */
  termsChanges: TermsChange[];
  limits: { chargeRetryLimit: number; maxDeclinesBeforeHold: number };
};

export const VIOLATION_KINDS = [
  'gateway_duplicate_by_cycle',
  'gateway_duplicate_by_key',
  'db_duplicate_approval',
  'ledger_mismatch',
  'total_mismatch',
  'pending_left',
  'cycle_lost',
  'proxima_cobranca',
  'key_mismatch',
  'sent_while_on_hold',
  'sent_while_paused',
  'sent_after_cancel',
  'stale_terms',
  'non_terminal_job',
  'retry_limit',
  'process_error',
  'unexpected_exit',
  'scenario',
] as const;
export type ViolationKind = (typeof VIOLATION_KINDS)[number];
export type Violation = { kind: ViolationKind; detail: string };

export type Figures = {
  recurrences: number;
  attempts: number;
  /** Approved charges verified against the ledger. */
  charges: number;
  duplicates: number;
  lost: number;
  mismatches: number;
  nonTerminalJobs: number;
};

/** Violations break an invariant; findings are reported service behaviour that breaks none (see README). */
export type Verdict = { violations: Violation[]; findings: string[]; figures: Figures };

const TERMINAL_JOB_STATES = new Set(['completed', 'failed', 'cancelled']);
const UNHANDLED =
  /unhandledRejection|UnhandledPromiseRejection|uncaughtException|Uncaught |triggerUncaughtException/;
const CRASH_MARK = /^\{"crashPoint":/;

function countBy<T>(items: readonly T[], key: (item: T) => string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const item of items) counts.set(key(item), (counts.get(key(item)) ?? 0) + 1);
  return counts;
}

function checkDuplicates(s: Snapshot, add: (v: Violation) => void): number {
  let duplicates = 0;
  const approved = s.ledger.filter((entry) => entry.status === 'approved');
  for (const [cycle, n] of countBy(approved, (e) => `${e.recorrenciaId}:${e.ciclo}`)) {
    if (n > 1) {
      duplicates += n - 1;
      add({ kind: 'gateway_duplicate_by_cycle', detail: `${n} approved gateway charges for ${cycle}` });
    }
  }
  for (const [key, n] of countBy(s.ledger, (e) => e.key)) {
    if (n > 1) {
      duplicates += n - 1;
      add({ kind: 'gateway_duplicate_by_key', detail: `${n} ledger entries for key ${key}` });
    }
  }
  const dbApproved = s.attempts.filter((a) => a.status === 'aprovada');
  for (const [cycle, n] of countBy(dbApproved, (a) => `${a.recorrencia_id}:${a.ciclo}`)) {
    if (n > 1) {
      duplicates += n - 1;
      add({ kind: 'db_duplicate_approval', detail: `${n} approved attempts recorded for ${cycle}` });
    }
  }
  return duplicates;
}

/** Database and ledger agree charge by charge (key, status, amount) and in total; returns the mismatches. */
function checkLedgerAgreement(s: Snapshot, add: (v: Violation) => void): number {
  let mismatches = 0;
  const mismatch = (detail: string) => {
    mismatches += 1;
    add({ kind: 'ledger_mismatch', detail });
  };
  const byKey = new Map(s.attempts.map((a) => [a.chave_idempotencia, a]));
  const ledgerByKey = new Map(s.ledger.map((e) => [e.key, e]));
  for (const entry of s.ledger) {
    const attempt = byKey.get(entry.key);
    if (attempt === undefined) {
      mismatch(`gateway executed ${entry.key} (${entry.status}), unknown to the database`);
      continue;
    }
    if (attempt.status === 'pendente') continue; // counted as pending_left
    // A rejected request ran nothing: any ledger entry under its key is a mismatch.
    const dbStatus = { aprovada: 'approved', recusada: 'declined', rejeitada: 'rejected' }[attempt.status];
    if (dbStatus !== entry.status)
      mismatch(`${entry.key}: gateway ${entry.status}, database ${attempt.status}`);
    else if (entry.status === 'declined' && attempt.codigo_recusa !== entry.code)
      mismatch(`${entry.key}: gateway code ${entry.code}, database ${attempt.codigo_recusa}`);
    if (entry.amountCents !== attempt.valor_centavos)
      mismatch(`${entry.key}: gateway ${entry.amountCents} cents, database ${attempt.valor_centavos}`);
    const expectedKey = attemptKey(Number(entry.recorrenciaId), entry.ciclo, entry.tentativa);
    if (expectedKey !== entry.key || Number(entry.recorrenciaId) !== attempt.recorrencia_id)
      add({ kind: 'key_mismatch', detail: `${entry.key} sent with metadata of ${expectedKey}` });
  }
  for (const attempt of s.attempts) {
    if (attempt.chave_idempotencia !== attemptKey(attempt.recorrencia_id, attempt.ciclo, attempt.tentativa))
      add({ kind: 'key_mismatch', detail: `attempt ${attempt.id} has key ${attempt.chave_idempotencia}` });
    const answered = attempt.status === 'aprovada' || attempt.status === 'recusada';
    if (answered && !ledgerByKey.has(attempt.chave_idempotencia))
      mismatch(`${attempt.chave_idempotencia} recorded ${attempt.status} without a gateway answer`);
  }
  const ledgerTotal = s.ledger
    .filter((e) => e.status === 'approved')
    .reduce((sum, e) => sum + e.amountCents, 0);
  const dbTotal = s.attempts
    .filter((a) => a.status === 'aprovada')
    .reduce((sum, a) => sum + a.valor_centavos, 0);
  if (ledgerTotal !== dbTotal) {
    mismatches += 1;
    add({
      kind: 'total_mismatch',
      detail: `approved total: gateway ${ledgerTotal} cents, database ${dbTotal}`,
    });
  }
  return mismatches;
}

/** Every due cycle settled; proxima_cobranca advanced once per approval; holds got nothing sent. */
function checkRecurrences(s: Snapshot, add: (v: Violation) => void): number {
  let lost = 0;
  const current = new Map(s.recurrences.map((r) => [r.id, r]));
  const attemptsOf = new Map<number, AttemptRow[]>();
  for (const a of s.attempts)
    attemptsOf.set(a.recorrencia_id, [...(attemptsOf.get(a.recorrencia_id) ?? []), a]);
  const ledgerOf = new Map<string, LedgerEntry[]>();
  for (const e of s.ledger) ledgerOf.set(e.recorrenciaId, [...(ledgerOf.get(e.recorrenciaId) ?? []), e]);

  for (const attempt of s.attempts.filter((a) => a.status === 'pendente')) {
    lost += 1;
    add({ kind: 'pending_left', detail: `attempt ${attempt.chave_idempotencia} still pendente once quiet` });
  }
  for (const seed of s.seeded) {
    const r = current.get(seed.id);
    if (r === undefined) {
      add({ kind: 'cycle_lost', detail: `recurrence ${seed.id} disappeared` });
      lost += 1;
      continue;
    }
    const attempts = (attemptsOf.get(r.id) ?? []).sort(
      (a, b) => a.ciclo.localeCompare(b.ciclo) || a.tentativa - b.tentativa,
    );
    const ledger = ledgerOf.get(String(r.id)) ?? [];
    if (seed.status === 'hold') {
      if (attempts.length > 0 || ledger.length > 0)
        add({
          kind: 'sent_while_on_hold',
          detail: `recurrence ${r.id} was on hold from the start, yet charged`,
        });
      continue;
    }
    if (r.status === 'hold' && r.hold_em !== null) {
      const late = ledger.filter((e) => Date.parse(e.at) > (r.hold_em ?? 0));
      for (const e of late)
        add({
          kind: 'sent_while_on_hold',
          detail: `${e.key} executed at ${e.at}, after recurrence ${r.id} went on hold`,
        });
    }
    // proxima_cobranca advances exactly once per approved cycle, along the calendar from the seeded cycle.
    const approved = [...new Set(attempts.filter((a) => a.status === 'aprovada').map((a) => a.ciclo))].sort();
    let expected = seed.proxima_cobranca;
    for (const cycle of approved) {
      if (cycle !== expected)
        add({
          kind: 'proxima_cobranca',
          detail: `recurrence ${r.id} approved cycle ${cycle}, expected ${expected}`,
        });
      expected = nextCycle(cycle, r);
    }
    if (approved.length > 0 && r.proxima_cobranca !== expected)
      add({
        kind: 'proxima_cobranca',
        detail: `recurrence ${r.id}: proxima_cobranca ${r.proxima_cobranca}, expected ${expected} after ${approved.length} approval(s)`,
      });
    if (r.ciclos_cobrados !== seed.ciclos_cobrados + approved.length)
      add({
        kind: 'proxima_cobranca',
        detail: `recurrence ${r.id}: ciclos_cobrados ${r.ciclos_cobrados} after ${approved.length} approval(s)`,
      });
    if (r.falhas_consecutivas > s.limits.maxDeclinesBeforeHold)
      add({
        kind: 'retry_limit',
        detail: `recurrence ${r.id}: ${r.falhas_consecutivas} consecutive declines`,
      });

    // Settled: charged past the last business date, declined with a retry scheduled, on hold, or left paused or
    // cancelled by the checkout (resumed, it must have been charged by the run that followed).
    const last = attempts[attempts.length - 1];
    const leftStopped = s.stops.some(
      (stop) => stop.recorrenciaId === r.id && stop.until === null && stop.status === r.status,
    );
    const settled =
      r.status === 'hold' ||
      leftStopped ||
      r.status === 'concluido' ||
      (r.status === 'ativo' && r.proxima_cobranca > s.lastBusinessDate) ||
      (r.status === 'ativo' &&
        r.proxima_tentativa !== null &&
        last?.status === 'recusada' &&
        last.recusa_reversivel === true);
    if (!settled && seed.proxima_cobranca <= s.lastBusinessDate) {
      lost += 1;
      add({
        kind: 'cycle_lost',
        detail: `recurrence ${r.id} (${r.status}, due ${r.proxima_cobranca}) was left unsettled`,
      });
    }
  }
  return lost;
}

/** The attempts of a recurrence created after `from` and before `until` (epoch ms; null: no end). */
function createdBetween(
  s: Snapshot,
  recorrenciaId: number,
  from: number,
  until: number | null,
): AttemptRow[] {
  return s.attempts.filter(
    (a) =>
      a.recorrencia_id === recorrenciaId && a.criado_em > from && (until === null || a.criado_em < until),
  );
}

/** No attempt created while its recurrence was paused or once cancelled (one in flight then may finish). */
function checkStops(s: Snapshot, add: (v: Violation) => void): void {
  for (const stop of s.stops) {
    for (const a of createdBetween(s, stop.recorrenciaId, stop.from, stop.until))
      add({
        kind: stop.status === 'pausado' ? 'sent_while_paused' : 'sent_after_cancel',
        detail: `attempt ${a.chave_idempotencia} created at ${new Date(a.criado_em).toISOString()}, while recurrence ${stop.recorrenciaId} was ${stop.status}`,
      });
  }
}

/** An attempt created after a change of amount or card carries the new ones. */
function checkTerms(s: Snapshot, add: (v: Violation) => void): void {
  for (const change of s.termsChanges) {
    const stale = createdBetween(s, change.recorrenciaId, change.at, null).filter(
      (a) => a.valor_centavos !== change.valor_centavos || a.cartao_token !== change.cartao_token,
    );
    for (const a of stale)
      add({
        kind: 'stale_terms',
        detail: `attempt ${a.chave_idempotencia} created after recurrence ${change.recorrenciaId} changed carries ${a.valor_centavos} cents and the ${a.cartao_token === change.cartao_token ? 'new' : 'old'} card, expected ${change.valor_centavos} cents and the new card`,
      });
  }
}

function checkJobs(s: Snapshot, add: (v: Violation) => void): number {
  let nonTerminal = 0;
  for (const job of s.jobs) {
    if (!TERMINAL_JOB_STATES.has(job.state)) {
      nonTerminal += 1;
      add({ kind: 'non_terminal_job', detail: `${job.name} job ${job.id} is ${job.state}` });
    }
    if (job.name === 'cobrar_recorrencia' && job.retry_count > s.limits.chargeRetryLimit)
      add({ kind: 'retry_limit', detail: `charge job ${job.id} retried ${job.retry_count} times` });
  }
  return nonTerminal;
}

function checkProcesses(s: Snapshot, add: (v: Violation) => void, findings: string[]): void {
  const started = new Set(s.logs.filter((log) => log.started).map((log) => `${log.slot}#${log.incarnation}`));
  for (const log of s.logs) {
    const lines = log.stderr.split('\n').filter((line) => line.trim() !== '' && !CRASH_MARK.test(line));
    const unhandled = lines.find((line) => UNHANDLED.test(line));
    if (unhandled !== undefined)
      add({ kind: 'process_error', detail: `${log.slot}#${log.incarnation}: ${unhandled}` });
    else if (lines.length > 0)
      add({ kind: 'process_error', detail: `${log.slot}#${log.incarnation} wrote to stderr: ${lines[0]}` });
    // A fatal line is how a role says it gave up; during start-up that is the finding reported below.
    if (log.started)
      for (const fatal of log.fatal)
        add({ kind: 'process_error', detail: `${log.slot}#${log.incarnation} fatal: ${fatal}` });
  }
  for (const exit of s.exits) {
    const name = `${exit.slot}#${exit.incarnation}`;
    if (exit.cause === 'unexpected' && exit.code === 1 && !started.has(name)) {
      // A role that gives up during its start-up (an error start-up does not retry) is restarted: no
      // invariant is at stake, but the README says roles wait for the database. Reported with its reason.
      const reason = s.logs.find((log) => log.slot === exit.slot && log.incarnation === exit.incarnation)
        ?.fatal[0];
      findings.push(
        `${name} (pid ${exit.pid}) exited with code 1 during start-up${reason === undefined ? '' : ` (${reason})`}`,
      );
      continue;
    }
    // SIGTERM before a role installed its handlers (it was still loading) ends it by the default action.
    const stoppedWhileLoading = exit.signal === 'SIGTERM' && !started.has(name);
    if (
      exit.cause === 'unexpected' ||
      (exit.cause === 'requested_stop' && exit.code !== 0 && !stoppedWhileLoading)
    )
      add({
        kind: 'unexpected_exit',
        detail: `${exit.slot}#${exit.incarnation} (pid ${exit.pid}) exited with code ${exit.code} signal ${exit.signal}`,
      });
  }
}

export function check(s: Snapshot): Verdict {
  const violations: Violation[] = [];
  const findings: string[] = [];
  const add = (v: Violation) => violations.push(v);
  const duplicates = checkDuplicates(s, add);
  const mismatches = checkLedgerAgreement(s, add);
  const lost = checkRecurrences(s, add);
  checkStops(s, add);
  checkTerms(s, add);
  const nonTerminalJobs = checkJobs(s, add);
  checkProcesses(s, add, findings);
  return {
    violations,
    findings,
    figures: {
      recurrences: s.seeded.length,
      attempts: s.attempts.length,
      charges: s.ledger.filter((e) => e.status === 'approved').length,
      duplicates,
      lost,
      mismatches,
      nonTerminalJobs,
    },
  };
}
