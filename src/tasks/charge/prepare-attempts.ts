// Phase 1 of the charge protocol, for a batch of charge jobs in one short transaction: lock their recurrences
// (in id order), decide each job (skip, resume the unresolved attempt, or start a new attempt for the planned
// cycle) and create the new attempts with their idempotency keys. Committed before any gateway call; run once
// more when it collides with an attempt another transaction created while this one waited for a lock.
import { UniqueIntegrityConstraintViolationError, type DatabaseTransactionConnection } from 'slonik';
import {
  insertAttempts,
  lockChargeCandidates,
  type ChargeCandidate,
  type NewAttempt,
} from '../../db/charge-batch.ts';
import {
  blockIfKeyExpired,
  findPendingAttempt,
  insertSkippedCycles,
  isBlocked,
  lastAttemptNumber,
  markAttemptSending,
  resolveAttempt,
  applyPauseMove,
  BEHIND_CYCLE,
  type Attempt,
} from '../../db/cobrancas.ts';
import { isJobActive } from '../../db/jobs.ts';
import { moveNextCharge, type Recurrence } from '../../db/recorrencias.ts';
import { businessDate, laterDate, type IsoDate } from '../../domain/dates.ts';
import { moveFromPause, nextChargeBeforeResume } from '../../domain/recurrence-rules.ts';
import { attemptKey } from '../../domain/identifiers.ts';
import { KEY_EXPIRED } from '../../gateway/gateway.ts';
import { CHARGE_QUEUE } from '../../queue/task-names.ts';
import { decideCharge } from './charge-decision.ts';
import type { ChargeDeps, ChargeJob } from './charge-recurrence.ts';
import { mutantActive } from './test-hooks.ts';

export type Prepared =
  | { kind: 'skip'; reason: string }
  | { kind: 'charge'; attempt: Attempt; recurrence: Recurrence; resumed: boolean }
  /** The attempt to resume is being sent by another live job: this one retries later, sending nothing. */
  | { kind: 'wait'; attempt: Attempt; heldBy: string };

/**
 * Resumes the recurrence's unresolved attempt (same key). 'resolved_meanwhile' when there is none any more;
 * 'abandoned' when the fresh_key mutant wrongly gave up on it. An attempt older than the gateway keeps its keys
 * is blocked first (phase 2 then sends nothing and puts the recurrence on hold).
 */
async function resumeAttempt(
  deps: ChargeDeps,
  tx: DatabaseTransactionConnection,
  job: ChargeJob,
  recurrence: Recurrence,
  batchJobIds: ReadonlySet<string>,
): Promise<Prepared | 'resolved_meanwhile' | 'abandoned'> {
  const found = await findPendingAttempt(tx, recurrence.id);
  if (found === null) return 'resolved_meanwhile';
  const hours = deps.config.gateway.keyRetentionHours;
  const pending =
    (await blockIfKeyExpired(tx, found.id, hours, {
      code: KEY_EXPIRED,
      message: `enviada antes e criada há mais de ${hours} h (GATEWAY_KEY_RETENTION_HOURS): a gateway pode ter esquecido a chave; não reenviada nem consultada`,
    })) ?? found;
  if (mutantActive('fresh_key')) {
    // Deliberately wrong (test-only): give up on the unresolved attempt and charge under a new key.
    await resolveAttempt(tx, pending.id, {
      status: 'recusada',
      gatewayRef: null,
      code: 'MUTANT',
      reversible: true,
      message: 'abandoned',
    });
    await moveNextCharge(tx, recurrence.id, pending.ciclo);
    return 'abandoned';
  }
  // Another job's request under this key may be at the gateway right now (two jobs of one recurrence, say a
  // dead-letter redrive beside the daily run): sending the key beside it would get a 409 from a gateway that
  // refuses concurrent requests on one key, and a 409 blocks the attempt for an operator. That job records the
  // outcome; this one retries, and by then finds the attempt resolved, or that job gone.
  // When that job is in this very batch (active only because this worker holds it), it resumes its own attempt
  // and this one has nothing to do.
  if (!isBlocked(pending) && pending.job_id !== null && pending.job_id !== job.id) {
    if (batchJobIds.has(pending.job_id)) return { kind: 'skip', reason: 'resumed_by_its_job_in_batch' };
    if (await isJobActive(tx, CHARGE_QUEUE, pending.job_id))
      return { kind: 'wait', attempt: pending, heldBy: pending.job_id };
  }
  // A blocked attempt is not sent (phase 2 answers for it without calling the gateway): nothing to count.
  if (!isBlocked(pending)) await markAttemptSending(tx, pending.id, job.id);
  return { kind: 'charge', attempt: pending, recurrence, resumed: true };
}

/**
 * A recurrence resumed (`cobrar_a_partir_de`) whose next cycle is still before the resume's date: cycles of
 * the pause are never charged, a cycle owed from before the pause is (see moveFromPause, which decides). The
 * move is recorded here; decideCharge then plans on the row as it leaves it. A retry planned for the
 * declined cycle goes ahead. `until`: the date the job plans on (decideCharge).
 */
async function startAfterPause(
  tx: DatabaseTransactionConnection,
  candidate: ChargeCandidate,
  backbill: boolean,
  until: IsoDate,
): Promise<ChargeCandidate> {
  if (
    candidate.status !== 'ativo' ||
    candidate.tem_pendente ||
    candidate.proxima_tentativa !== null ||
    !nextChargeBeforeResume(candidate)
  )
    return candidate;
  // tem_pendente was read in the snapshot of the statement that locked the row: an attempt another phase 1
  // committed while this one waited for the lock (a retry job of that very cycle) is not in it. Moving the next
  // cycle from under that attempt would record its cycle as skipped; the rare case pays one more read.
  if ((await findPendingAttempt(tx, candidate.id)) !== null) return { ...candidate, tem_pendente: true };
  const move = moveFromPause(
    candidate.proxima_cobranca,
    candidate,
    candidate.ultima_tentativa > 0,
    until,
    candidate,
    backbill,
  );
  if (move === null) return candidate;
  await applyPauseMove(tx, candidate.id, move);
  // No attempt was ever made for a cycle after the resume.
  return { ...candidate, proxima_cobranca: move.next, ultima_tentativa: 0 };
}

/**
 * A recurrence several cycles behind: records the skipped cycles and moves its next charge to the one charged.
 * Returns the number of that cycle's new attempt.
 */
async function skipToPlannedCycle(
  tx: DatabaseTransactionConnection,
  recurrence: Recurrence,
  plan: { cycle: string; skipped: string[] },
): Promise<number> {
  await insertSkippedCycles(tx, recurrence.id, plan.skipped, plan.cycle, BEHIND_CYCLE);
  await moveNextCharge(tx, recurrence.id, plan.cycle);
  return (await lastAttemptNumber(tx, recurrence.id, plan.cycle)) + 1;
}

/**
 * Phase 1 for `jobs` (one entry per job, in order). New attempts are inserted in one statement; the rare cases
 * (a resume, cycles to skip first) take a few statements more each.
 * Two jobs of the batch for the same recurrence: the first that charges it does, the ones after it have nothing
 * to do (one that has nothing to charge, a job for an earlier date, say, leaves the recurrence to the next).
 */
export async function prepareAttempts(
  deps: ChargeDeps,
  tx: DatabaseTransactionConnection,
  jobs: ChargeJob[],
): Promise<Prepared[]> {
  const today = businessDate(deps.now(), deps.config.timeZone);
  const backbill = deps.config.billing.backbillMissedCycles;
  const ids = [...new Set(jobs.map((job) => job.data.recorrenciaId))].sort((a, b) => a - b);
  const candidates = new Map((await lockChargeCandidates(tx, ids)).map((row) => [row.id, row]));
  // Each job is judged due on the next charge as locked, before any job of the batch moved it past a pause.
  const lockedNext = new Map([...candidates.values()].map((row) => [row.id, row.proxima_cobranca]));
  const prepared: Array<Prepared | undefined> = [];
  const fresh: Array<{ index: number; row: NewAttempt; recurrence: Recurrence }> = [];
  const seen = new Set<number>();
  const batchJobIds = new Set(jobs.map((job) => job.id));
  for (const [index, job] of jobs.entries()) {
    if (seen.has(job.data.recorrenciaId)) {
      prepared[index] = { kind: 'skip', reason: 'charged_by_another_job_in_batch' };
      continue;
    }
    const locked = candidates.get(job.data.recorrenciaId);
    const until = laterDate(job.data.dataNegocio, today);
    let candidate = locked === undefined ? null : await startAfterPause(tx, locked, backbill, until);
    // Deliberately wrong (test-only): charge a paused recurrence as if it were active.
    if (candidate?.status === 'pausado' && mutantActive('charge_paused'))
      candidate = { ...candidate, status: 'ativo' };
    const dueOn = lockedNext.get(job.data.recorrenciaId);
    // A later job of the batch for the same recurrence decides on the row as this one leaves it.
    if (candidate !== null) candidates.set(candidate.id, candidate);
    let decision = decideCharge(
      candidate,
      candidate?.tem_pendente ?? false,
      job.data,
      backbill,
      today,
      dueOn,
    );
    if (decision.kind === 'resume' && candidate !== null) {
      const resumed = await resumeAttempt(deps, tx, job, candidate, batchJobIds);
      if (typeof resumed === 'object') {
        prepared[index] = resumed;
        // A job that leaves the attempt to another (waits, or defers to its job later in the batch) charges
        // nothing: the recurrence stays open to the batch's other jobs.
        if (resumed.kind === 'charge') seen.add(candidate.id);
        continue;
      }
      // The locking statement read tem_pendente in the snapshot it took before waiting for the lock, while
      // the recurrence row it returns is the one the previous lock holder committed: when that holder resolved
      // the attempt (and, say, planned a retry), decide again on the row as it is, past a pause as the first
      // decision would have been. The fresh_key mutant decides as if the recurrence were not waiting for a
      // retry either.
      if (resumed === 'resolved_meanwhile') {
        candidate = await startAfterPause(tx, { ...candidate, tem_pendente: false }, backbill, until);
        candidates.set(candidate.id, candidate);
      }
      decision = decideCharge(
        resumed === 'abandoned' ? { ...candidate, proxima_tentativa: null } : candidate,
        false,
        job.data,
        backbill,
        today,
        dueOn,
      );
    }
    if (decision.kind === 'skip' || decision.kind === 'resume' || candidate === null) {
      prepared[index] = {
        kind: 'skip',
        reason: decision.kind === 'skip' ? decision.reason : 'recurrence_not_found',
      };
    } else {
      seen.add(candidate.id);
      const number =
        decision.plan.skipped.length > 0
          ? await skipToPlannedCycle(tx, candidate, decision.plan)
          : candidate.ultima_tentativa + 1;
      fresh.push({
        index,
        recurrence: candidate,
        row: {
          recurrenceId: candidate.id,
          cycle: decision.plan.cycle,
          attempt: number,
          key: attemptKey(candidate.id, decision.plan.cycle, number),
          amountCents: candidate.valor_centavos,
          currency: candidate.moeda,
          cardToken: candidate.cartao_token,
          businessDate: job.data.dataNegocio,
          jobId: job.id,
          clearsRetry: decision.clearsRetry,
        },
      });
    }
  }
  const inserted = new Map(
    (
      await insertAttempts(
        tx,
        fresh.map((item) => item.row),
      )
    ).map((attempt) => [attempt.recorrencia_id, attempt]),
  );
  for (const item of fresh) {
    const attempt = inserted.get(item.row.recurrenceId);
    if (attempt === undefined)
      throw new Error(`attempt for recurrence ${item.row.recurrenceId} was not created`);
    prepared[item.index] = { kind: 'charge', attempt, recurrence: item.recurrence, resumed: false };
  }
  return prepared.map((entry) => entry ?? { kind: 'skip', reason: 'recurrence_not_found' });
}

/**
 * Phase 1 in its own transaction, run once more if it collides with an attempt created meanwhile: the lock
 * statement reads the attempts as of its start, so when it had to wait for another transaction's lock on a
 * recurrence (a retry or back-billing job racing this one), it can miss the attempt that transaction
 * committed and try to create it again, which the unique keys refuse. The second run starts after that
 * commit, sees the attempt and resumes it under its key instead of failing the whole batch.
 */
export async function prepareBatch(deps: ChargeDeps, jobs: ChargeJob[]): Promise<Prepared[]> {
  const run = () => deps.pool.transaction((tx) => prepareAttempts(deps, tx, jobs));
  try {
    return await run();
  } catch (error) {
    if (!(error instanceof UniqueIntegrityConstraintViolationError)) throw error;
    deps.log.warn(
      {
        err: error,
        jobs: jobs.map((job) => job.id),
        recurrences: jobs.map((job) => job.data.recorrenciaId),
      },
      'phase 1 collided with an attempt created while it waited for a recurrence lock: running it again',
    );
    return run();
  }
}
