// The charge protocol (Stripe's idempotency-key protocol, in atomic phases), for one charge job or a batch:
//  1. a short transaction locks the recurrences, checks each is still due and active, and creates (or reuses)
//     the pending attempts with their idempotency keys (prepare-attempts.ts);
//  2. outside any transaction, the gateway is called with those keys (gateway-call.ts);
//  3. one short transaction records the batch's approvals and declines, updates the recurrences and completes
//     the jobs fenced to the attempt of each job this worker holds (record-outcomes.ts); when that transaction
//     fails, each outcome is recorded in a transaction of its own, so that one the database refuses fails
//     alone; a request the gateway rejected puts its recurrence on hold in a transaction of its own
//     (record-rejection.ts).
// A crash anywhere leaves nothing, or a pending attempt whose key is reused later: never a second charge.
// A batch costs the same few round trips as a single charge; a batch of one is the per-charge case.
import type { Job, PgBoss } from 'pg-boss';
import type { DatabasePool } from 'slonik';
import { outcomeRecordingReserveMs, type Config } from '../../config.ts';
import { businessDate, laterDate, type IsoDate } from '../../domain/dates.ts';
import type { DeclineDecision } from '../../domain/retry-policy.ts';
import { KEY_EXPIRED, type ChargeOutcome, type PaymentGateway } from '../../gateway/gateway.ts';
import type { Logger } from '../../log.ts';
import type { ChargeJobPayload } from './charge-jobs.ts';
import { callGatewayForBatch, type GatewayCall } from './gateway-call.ts';
import { prepareBatch, type Prepared } from './prepare-attempts.ts';
import { recordEachOutcome, type Approval, type Decline } from './record-outcomes.ts';
import { recordRejection, type RejectionRecord } from './record-rejection.ts';
import { crashPoint } from './test-hooks.ts';

export type ChargeDeps = {
  config: Config;
  pool: DatabasePool;
  boss: PgBoss;
  log: Logger;
  gateway: PaymentGateway;
  now: () => Date;
};

export type ChargeJob = Pick<
  Job<ChargeJobPayload>,
  'id' | 'retryCount' | 'signal' | 'data' | 'expireInSeconds'
>;

export type ChargeResult =
  | { status: 'approved'; attemptId: number; key: string; cycle: IsoDate; amountCents: number }
  | {
      status: 'declined';
      attemptId: number;
      key: string;
      cycle: IsoDate;
      code: string;
      decision: DeclineDecision['kind'];
    }
  | { status: 'skipped'; reason: string }
  | { status: 'resolved_elsewhere'; attemptId: number }
  /**
   * The gateway approved the request of an attempt another holder blocked meanwhile (a 409, or the key's
   * retention ran out): not recorded as paid; the charge id is noted on the blocked attempt for the operator.
   */
  | { status: 'approved_but_blocked'; attemptId: number; chargeId: string }
  /**
   * The gateway approved the request of an attempt ended meanwhile as something else (`rejeitada` by an
   * operator's `nao_cobrada`, say): not recorded as paid; the charge id is noted on the attempt for an operator,
   * who checks whether the cycle was charged again under another key.
   */
  | { status: 'approved_but_ended'; attemptId: number; chargeId: string; attemptStatus: string }
  /** The gateway declined the request of an attempt blocked meanwhile: noted on the attempt, not recorded. */
  | { status: 'declined_but_blocked'; attemptId: number; code: string }
  /** The gateway outcome is unknown: the attempt stays pending and the job must be retried (same key). */
  | { status: 'unresolved'; attemptId: number; key: string; reason: string }
  /** The gateway refused the request itself (not a decline): the recurrence is on hold for an operator. */
  | { status: 'rejected'; attemptId: number; key: string; reason: string }
  /** Our claim on the job lapsed before phase 3 committed: nothing was written; the job's new holder finishes. */
  | { status: 'claim_lost'; attemptId: number }
  /** Recording the outcome failed (the database, most likely): the job is retried and resumes the attempt. */
  | { status: 'failed'; reason: string };

const CLAIM_LOST = 'job claim lost before commit: outcome not recorded here (fence refused)';

type Call = GatewayCall & { index: number; recurrence: Approval['recurrence'] };

/**
 * Runs the protocol for `jobs` (a fetched batch, claimed at `claimedAt`, ms since the epoch), returning one
 * result per job in order. Throws only when phase 1 fails (the jobs are then retried); an outcome that cannot be
 * recorded fails its own job in the results.
 */
export async function chargeJobs(
  deps: ChargeDeps,
  jobs: ChargeJob[],
  claimedAt = Date.now(),
): Promise<ChargeResult[]> {
  crashPoint('before_phase1');
  const prepared = await prepareBatch(deps, jobs);
  const { results, calls } = callsToMake(deps, jobs, prepared);
  if (calls.length === 0) return results;
  crashPoint('after_phase1');

  // The expiry pg-boss applies to these jobs: the one stored on each when it was queued.
  const limitSeconds = Math.min(...calls.map((entry) => entry.job.expireInSeconds));
  const deadline = claimedAt + limitSeconds * 1000 - outcomeRecordingReserveMs(limitSeconds);
  const outcomes = await callGatewayForBatch(deps, calls, deadline);
  crashPoint('after_gateway');

  const today = businessDate(deps.now(), deps.config.timeZone);
  const approvals: Array<Approval & { index: number }> = [];
  const declines: Array<Decline & { index: number }> = [];
  // Rejections are recorded apart, beside phase 3: each in its own transaction (see record-rejection.ts).
  const rejections: Array<Promise<void>> = [];
  for (const [i, call] of calls.entries()) {
    const outcome = outcomes[i] as (typeof outcomes)[number];
    const { index, job, attempt } = call;
    switch (outcome.kind) {
      case 'approved':
        approvals.push({ index, job, attempt, recurrence: call.recurrence, chargeId: outcome.chargeId });
        break;
      case 'declined':
        declines.push({ index, job, attempt, outcome, today: laterDate(today, job.data.dataNegocio) });
        break;
      case 'unknown':
        results[index] = {
          status: 'unresolved',
          attemptId: attempt.id,
          key: attempt.chave_idempotencia,
          reason: outcome.reason,
        };
        deps.log.warn(
          { ...logContext(call), reason: outcome.reason, resumed: call.resumed },
          'charge outcome unknown: attempt stays pending; its job retries with the same key, or goes to the dead-letter queue once its retries have run out',
        );
        break;
      case 'rejected':
        rejections.push(
          recordRejectionOf(deps, call, outcome).then((result) => {
            results[index] = result;
          }),
        );
        break;
    }
  }
  const recorded = await recordEachOutcome(deps, { approvals, declines, today });
  crashPoint('after_commit');
  for (const [i, approval] of approvals.entries()) {
    const result = recorded.approvals[i] as ChargeResult;
    results[approval.index] = result;
    logApprovalNotPaid(deps, approval, result);
  }
  for (const [i, decline] of declines.entries()) {
    const result = recorded.declines[i] as ChargeResult;
    results[decline.index] = result;
    logDeclineRecorded(deps, decline, result);
  }
  await Promise.all(rejections);
  return results;
}

/**
 * Phase 1's answer per job: a result for the jobs that charge nothing (skipped, or waiting for another job's
 * request), and the gateway calls of the others. A charge whose outcome somehow goes unrecorded fails (and
 * retries) rather than completing silently: its result starts as `failed`.
 */
function callsToMake(
  deps: ChargeDeps,
  jobs: ChargeJob[],
  prepared: Prepared[],
): { results: ChargeResult[]; calls: Call[] } {
  const results: ChargeResult[] = [];
  const calls: Call[] = [];
  for (const [index, entry] of prepared.entries()) {
    const job = jobs[index] as ChargeJob;
    const context = { jobId: job.id, recorrenciaId: job.data.recorrenciaId };
    if (entry.kind === 'skip') {
      results.push({ status: 'skipped', reason: entry.reason });
      deps.log.debug({ ...context, reason: entry.reason }, 'nothing to charge');
    } else if (entry.kind === 'wait') {
      const { attempt } = entry;
      results.push({
        status: 'unresolved',
        attemptId: attempt.id,
        key: attempt.chave_idempotencia,
        reason: 'in_flight_elsewhere',
      });
      deps.log.warn(
        { ...context, attemptId: attempt.id, heldBy: entry.heldBy },
        'the attempt is being sent by another live job: not sent beside it; this job retries',
      );
    } else {
      results.push({ status: 'failed', reason: 'no outcome recorded' });
      calls.push({
        index,
        job,
        attempt: entry.attempt,
        resumed: entry.resumed,
        recurrence: entry.recurrence,
      });
    }
  }
  return { results, calls };
}

/** Records a request the gateway rejected (recordRejection) and logs what became of it: the job's result. */
async function recordRejectionOf(
  deps: ChargeDeps,
  call: Call,
  outcome: Extract<ChargeOutcome, { kind: 'rejected' }>,
): Promise<ChargeResult> {
  const log = deps.log.child(logContext(call));
  const fields = { reason: outcome.reason, message: outcome.message };
  const attemptId = call.attempt.id;
  let recorded: RejectionRecord;
  try {
    recorded = await recordRejection(deps, call.job, call.attempt, outcome);
  } catch (error) {
    log.error({ err: error }, 'could not record the rejection: the job will retry');
    return { status: 'failed', reason: (error as Error).message };
  }
  if (recorded === 'claim_lost') {
    log.warn({ ...fields, outcome: 'rejected' }, CLAIM_LOST);
    return { status: 'claim_lost', attemptId };
  }
  if (recorded === 'resolved_elsewhere') {
    log.warn(fields, 'gateway rejected the request of an attempt resolved elsewhere meanwhile');
    return { status: 'resolved_elsewhere', attemptId };
  }
  // An attempt blocked at an earlier run is answered without the gateway: say so, not that the gateway
  // rejected a request this run never sent.
  const what =
    outcome.reason === KEY_EXPIRED
      ? 'attempt older than the gateway keeps its keys (GATEWAY_KEY_RETENTION_HOURS): not sent'
      : call.attempt.codigo_recusa !== null
        ? 'attempt blocked on its key until an operator resolves it: not sent, not looked up'
        : 'gateway rejected the charge request';
  log.error(
    { ...fields, attemptEnded: !outcome.executed },
    recorded === 'held'
      ? `${what}: recurrence put on hold for an operator`
      : `${what} (the recurrence is no longer active: not put on hold)`,
  );
  return { status: 'rejected', attemptId, key: call.attempt.chave_idempotencia, reason: outcome.reason };
}

/** Logs the approvals phase 3 could not record as paid (a lost claim, an attempt blocked or ended meanwhile). */
function logApprovalNotPaid(deps: ChargeDeps, approval: Approval, result: ChargeResult): void {
  if (result.status === 'claim_lost')
    deps.log.warn({ ...logContext(approval), outcome: 'approved' }, CLAIM_LOST);
  if (result.status === 'approved_but_blocked')
    deps.log.error(
      { ...logContext(approval), chargeId: approval.chargeId },
      "gateway approved an attempt blocked meanwhile: not recorded as paid; its charge id is in the attempt's mensagem for the operator who resolves it",
    );
  if (result.status === 'approved_but_ended')
    deps.log.error(
      { ...logContext(approval), chargeId: approval.chargeId, attemptStatus: result.attemptStatus },
      "gateway approved an attempt already ended as another outcome: not recorded as paid; its charge id is in the attempt's mensagem: check whether the cycle was charged again under another key",
    );
}

/** Logs each decline phase 3 recorded (with the decision), or why it did not. */
function logDeclineRecorded(deps: ChargeDeps, decline: Decline, result: ChargeResult): void {
  if (result.status === 'claim_lost')
    deps.log.warn({ ...logContext(decline), outcome: 'declined' }, CLAIM_LOST);
  else if (result.status === 'declined_but_blocked')
    deps.log.warn(
      { ...logContext(decline), code: decline.outcome.code },
      "gateway declined an attempt blocked meanwhile: noted in the attempt's mensagem for the operator who resolves it (nothing was charged under the key)",
    );
  else if (result.status !== 'failed')
    deps.log.info(
      {
        ...logContext(decline),
        code: decline.outcome.code,
        reversible: decline.outcome.reversible,
        result,
      },
      'charge declined',
    );
}

/** What a charge's log lines carry: its job, recurrence, attempt and key. */
function logContext({ job, attempt }: { job: ChargeJob; attempt: Approval['attempt'] }) {
  return {
    jobId: job.id,
    recorrenciaId: attempt.recorrencia_id,
    attemptId: attempt.id,
    key: attempt.chave_idempotencia,
  };
}

/** The protocol for a single charge job. */
export async function chargeRecurrence(deps: ChargeDeps, job: ChargeJob): Promise<ChargeResult> {
  const [result] = await chargeJobs(deps, [job]);
  return result as ChargeResult;
}
