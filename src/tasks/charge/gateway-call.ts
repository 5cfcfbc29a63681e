// Phase 2 of the charge protocol: the gateway call, outside any transaction, under the cluster-wide cap on
// concurrent gateway calls (GATEWAY_MAX_CONCURRENCY slots in vagas_gateway). A resumed attempt first looks its
// key up: the previous sender may have reached the gateway. When every slot stays taken for a while a charge
// gives up with an unknown outcome ('gateway_busy'), and so does a call still running at the batch's deadline
// ('batch_deadline'): its attempt stays pending and the job retries under the same key. Slot trouble (a
// statement that fails) never fails the batch: a charge without a slot gives up alone ('slot_error', so that
// operators are not sent to raise a cap that is not the problem), and a slot not freed is taken back when its
// lease ends.
import { setTimeout as sleep } from 'node:timers/promises';
import { isBlocked, unmarkAttemptsSending, type Attempt } from '../../db/cobrancas.ts';
import {
  freeGatewaySlots,
  takeGatewaySlot,
  takeGatewaySlots,
  type TakenSlot,
} from '../../db/gateway-slots.ts';
import { gatewaySlotWaitMs } from '../../config.ts';
import { KEY_REUSED, type ChargeOutcome, type ChargeRequest } from '../../gateway/gateway.ts';
import type { ChargeDeps, ChargeJob } from './charge-recurrence.ts';

export type GatewayCall = { job: ChargeJob; attempt: Attempt; resumed: boolean };

/** What the gateway is sent for an attempt: its key, and the amount and card it was created with. */
export function chargeRequest(attempt: Attempt): ChargeRequest {
  return {
    idempotencyKey: attempt.chave_idempotencia,
    amountCents: attempt.valor_centavos,
    currency: attempt.moeda,
    cardToken: attempt.cartao_token,
    description: `recorrencia ${attempt.recorrencia_id} ciclo ${attempt.ciclo}`,
    metadata: { recorrenciaId: attempt.recorrencia_id, ciclo: attempt.ciclo, tentativa: attempt.tentativa },
  };
}

/**
 * The answer for a blocked attempt, given without the gateway: it holds another request under the key (409), or
 * may have forgotten the key (idempotency_key_expired). A lookup would answer about that other request (or not
 * know the key), and a send would be refused again, or charged as new. It waits for an operator.
 */
function blockedOutcome(attempt: Attempt): ChargeOutcome {
  return {
    kind: 'rejected',
    reason: attempt.codigo_recusa ?? KEY_REUSED,
    message: 'attempt blocked until an operator resolves it: not sent, not looked up',
    executed: true,
  };
}

async function callGateway(
  deps: ChargeDeps,
  { attempt, resumed }: GatewayCall,
  signal: AbortSignal,
): Promise<ChargeOutcome> {
  const request = chargeRequest(attempt);
  if (resumed) {
    const known = await deps.gateway.lookup(request, signal);
    if (known.kind !== 'not_found') return known;
  }
  return deps.gateway.charge(request, signal);
}

/** Long enough for a lookup and a charge; a holder that died frees its slot when the lease ends. */
function leaseMs(deps: ChargeDeps): number {
  return deps.config.gateway.timeoutMs * 2 + 5_000;
}

const BATCH_DEADLINE: ChargeOutcome = { kind: 'unknown', reason: 'batch_deadline' };
const GATEWAY_BUSY: ChargeOutcome = { kind: 'unknown', reason: 'gateway_busy' };
const SLOT_ERROR: ChargeOutcome = { kind: 'unknown', reason: 'slot_error' };

/**
 * Waits (bounded) for a slot of its own, for a charge the batch could not give one to: the slot, or why none
 * came (every slot stayed taken, or taking one failed).
 */
async function waitForSlot(
  deps: ChargeDeps,
  call: GatewayCall,
  signal: AbortSignal,
): Promise<number | ChargeOutcome> {
  const deadline = Date.now() + gatewaySlotWaitMs(deps.config.charges.hardLimitSeconds);
  // Polls back off (20 ms, doubling, at most 250 ms, jittered): a thousand waiters must not hammer the table.
  for (let round = 0; ; round++) {
    let slot: number | null;
    try {
      slot = await takeGatewaySlot(deps.pool, call.job.id, leaseMs(deps));
    } catch (error) {
      // Thrown, it would fail the whole batch and lose its neighbours' answers: this charge gives up alone.
      deps.log.error(
        {
          err: error,
          jobId: call.job.id,
          recorrenciaId: call.job.data.recorrenciaId,
          attemptId: call.attempt.id,
        },
        'could not take a gateway slot: charge not sent',
      );
      return SLOT_ERROR;
    }
    if (slot !== null) return slot;
    if (Date.now() > deadline || signal.aborted) return GATEWAY_BUSY;
    await sleep(Math.min(250, 20 * 2 ** round) * (0.5 + Math.random()));
  }
}

/** Frees slots; a failure is logged, never thrown: the call's outcome matters more, and the lease ends anyway. */
async function freeSlots(deps: ChargeDeps, slots: readonly TakenSlot[]): Promise<void> {
  if (slots.length === 0) return;
  try {
    await freeGatewaySlots(deps.pool, slots);
  } catch (error) {
    deps.log.error(
      { err: error, slots: slots.map((slot) => slot.vaga), jobs: slots.map((slot) => slot.job_id) },
      'could not free gateway slots: they stay taken until their lease ends',
    );
  }
}

/** How long a batch gathers the slots of calls that ended before freeing them in one statement. */
const SLOT_RELEASE_GATHER_MS = 25;

/**
 * Frees a batch's slots as their calls end, gathered: calls that end within SLOT_RELEASE_GATHER_MS of each
 * other free their slots in one statement (a batch whose calls end together, in one statement at its end),
 * and a slow call does not keep its neighbours' slots taken.
 */
function slotRelease(deps: ChargeDeps, slots: readonly TakenSlot[]) {
  const byJob = new Map(slots.map((slot) => [slot.job_id, slot]));
  let ended: TakenSlot[] = [];
  let timer: NodeJS.Timeout | undefined;
  const freeing: Array<Promise<void>> = [];
  const flush = () => {
    clearTimeout(timer);
    timer = undefined;
    freeing.push(freeSlots(deps, ended));
    ended = [];
  };
  return {
    ended(jobId: string): void {
      const slot = byJob.get(jobId);
      if (slot === undefined) return;
      ended.push(slot);
      timer ??= setTimeout(flush, SLOT_RELEASE_GATHER_MS);
    },
    /** Frees what is left and waits for every free to end. */
    async done(): Promise<void> {
      flush();
      await Promise.all(freeing);
    },
  };
}

/**
 * Calls the gateway for every charge of a batch, in parallel, until `deadline` (ms since the epoch): a call
 * still running then is given up as unknown ('batch_deadline'), so the batch records its outcomes while it
 * still holds its jobs. The batch takes its slots in one statement and frees them as its calls end (see
 * slotRelease); charges left without a slot wait for one each. An attempt never sent (no slot came, the slots
 * could not be taken, or the deadline passed first) has its phase-1 sending mark taken back: it counts as sent
 * for the brand caps and the key retention only once it was.
 */
export async function callGatewayForBatch(
  deps: ChargeDeps,
  calls: GatewayCall[],
  deadline: number,
): Promise<ChargeOutcome[]> {
  const unsent: number[] = [];
  const outcomes = await callWithinDeadline(deps, calls, deadline, (attemptId) => unsent.push(attemptId));
  if (unsent.length > 0)
    await unmarkAttemptsSending(deps.pool, unsent).catch((error: unknown) => {
      // The outcomes matter more: an attempt left counted as sent is only looked up before its next send.
      deps.log.warn({ err: error, attempts: unsent }, 'could not uncount attempts never sent');
    });
  return outcomes;
}

/**
 * Blocked attempts are answered first, apart: they need no slot and no time, and phase 1 did not count them as
 * sent this round, so nothing may take a send back from them (`envios` is what says a cycle may have been
 * charged, to an operator resolving the block and to the hand-back to the old system).
 */
async function callWithinDeadline(
  deps: ChargeDeps,
  calls: GatewayCall[],
  deadline: number,
  notSent: (attemptId: number) => void,
): Promise<ChargeOutcome[]> {
  const answered = calls.map((entry) => (isBlocked(entry.attempt) ? blockedOutcome(entry.attempt) : null));
  const toSend = calls.filter((_, i) => answered[i] === null);
  const sent = toSend.length === 0 ? [] : await sendWithinDeadline(deps, toSend, deadline, notSent);
  let next = 0;
  return answered.map((outcome) => outcome ?? (sent[next++] as ChargeOutcome));
}

async function sendWithinDeadline(
  deps: ChargeDeps,
  calls: GatewayCall[],
  deadline: number,
  notSent: (attemptId: number) => void,
): Promise<ChargeOutcome[]> {
  // Phase 1 took the batch's time: nothing is sent that would be given up anyway.
  if (Date.now() >= deadline) {
    for (const entry of calls) notSent(entry.attempt.id);
    return calls.map(() => BATCH_DEADLINE);
  }
  const batchSignal = AbortSignal.timeout(deadline - Date.now());
  const send = async (entry: GatewayCall, signal: AbortSignal, withSlot: boolean): Promise<ChargeOutcome> => {
    if (withSlot) return callGateway(deps, entry, signal);
    const slot = await waitForSlot(deps, entry, signal);
    if (typeof slot !== 'number') {
      notSent(entry.attempt.id);
      return slot;
    }
    try {
      return await callGateway(deps, entry, signal);
    } finally {
      await freeSlots(deps, [{ vaga: slot, job_id: entry.job.id }]);
    }
  };
  const call = async (entry: GatewayCall, withSlot: boolean): Promise<ChargeOutcome> => {
    const signal = AbortSignal.any([entry.job.signal, batchSignal]);
    const outcome = await send(entry, signal, withSlot);
    // Only what the abort itself caused is the deadline's doing: an answer, or a timeout or 5xx, is kept.
    const cut =
      outcome.kind === 'unknown' && (outcome.reason === 'aborted' || outcome.reason === 'gateway_busy');
    return cut && batchSignal.aborted && !entry.job.signal.aborted ? BATCH_DEADLINE : outcome;
  };
  if (deps.config.gateway.maxConcurrency === 0) return Promise.all(calls.map((entry) => call(entry, true)));
  let slots: readonly TakenSlot[];
  try {
    slots = await takeGatewaySlots(
      deps.pool,
      calls.map((entry) => entry.job.id),
      leaseMs(deps),
    );
  } catch (error) {
    // Nothing was sent: every charge gives up unsent, as one whose own slot could not be taken does, so its
    // sending mark is taken back and its job retries.
    deps.log.error(
      {
        err: error,
        jobIds: calls.map((entry) => entry.job.id),
        recurrences: calls.map((entry) => entry.job.data.recorrenciaId),
      },
      "could not take the batch's gateway slots: its charges give up unsent",
    );
    for (const entry of calls) notSent(entry.attempt.id);
    return calls.map(() => SLOT_ERROR);
  }
  const withSlot = new Set(slots.map((slot) => slot.job_id));
  const release = slotRelease(deps, slots);
  try {
    return await Promise.all(
      calls.map(async (entry) => {
        try {
          return await call(entry, withSlot.has(entry.job.id));
        } finally {
          release.ended(entry.job.id);
        }
      }),
    );
  } finally {
    await release.done();
  }
}
