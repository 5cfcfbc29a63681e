// Phase 2 of the charge protocol: the gateway call, outside any transaction, under the cluster-wide cap on
// concurrent gateway calls (GATEWAY_MAX_CONCURRENCY slots in vagas_gateway). A resumed attempt first looks its
// key up: the previous sender may have reached the gateway. When every slot stays taken for a while a charge
// gives up with an unknown outcome ('gateway_busy'), and so does a call still running at the batch's deadline
// ('batch_deadline'): its attempt stays pending and the job retries under the same key.
import { setTimeout as sleep } from 'node:timers/promises';
import { isBlocked, type Attempt } from '../../db/cobrancas.ts';
import {
  freeGatewaySlot,
  freeGatewaySlots,
  takeGatewaySlot,
  takeGatewaySlots,
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

async function callGateway(
  deps: ChargeDeps,
  { attempt, resumed }: GatewayCall,
  signal: AbortSignal,
): Promise<ChargeOutcome> {
  // The gateway holds another request under its key (409): a lookup would answer about that request, and a
  // send would be refused again (or charge, should the gateway have forgotten the key). It waits for an operator.
  if (isBlocked(attempt))
    return {
      kind: 'rejected',
      reason: attempt.codigo_recusa ?? KEY_REUSED,
      message: 'attempt blocked until an operator resolves it: not sent, not looked up',
      executed: true,
    };
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

/** Waits (bounded) for a slot of its own, for a charge the batch could not give one to. */
async function callWithOwnSlot(
  deps: ChargeDeps,
  call: GatewayCall,
  signal: AbortSignal,
): Promise<ChargeOutcome> {
  const deadline = Date.now() + gatewaySlotWaitMs(deps.config.charges.hardLimitSeconds);
  let slot = await takeGatewaySlot(deps.pool, call.job.id, leaseMs(deps));
  while (slot === null) {
    if (Date.now() > deadline || signal.aborted) return { kind: 'unknown', reason: 'gateway_busy' };
    await sleep(20 + Math.random() * 30);
    slot = await takeGatewaySlot(deps.pool, call.job.id, leaseMs(deps));
  }
  try {
    return await callGateway(deps, call, signal);
  } finally {
    await freeGatewaySlot(deps.pool, slot, call.job.id);
  }
}

const BATCH_DEADLINE: ChargeOutcome = { kind: 'unknown', reason: 'batch_deadline' };

/**
 * Calls the gateway for every charge of a batch, in parallel, until `deadline` (ms since the epoch): a call
 * still running then is given up as unknown ('batch_deadline'), so the batch records its outcomes while it
 * still holds its jobs. The batch takes its slots in one statement and frees them together when its last
 * call ends; charges left without a slot wait for one each.
 */
export async function callGatewayForBatch(
  deps: ChargeDeps,
  calls: GatewayCall[],
  deadline: number,
): Promise<ChargeOutcome[]> {
  // Phase 1 took the batch's time: nothing is sent that would be given up anyway.
  if (Date.now() >= deadline) return calls.map(() => BATCH_DEADLINE);
  const batchSignal = AbortSignal.timeout(deadline - Date.now());
  const call = async (entry: GatewayCall, withSlot: boolean): Promise<ChargeOutcome> => {
    const signal = AbortSignal.any([entry.job.signal, batchSignal]);
    const outcome = withSlot
      ? await callGateway(deps, entry, signal)
      : await callWithOwnSlot(deps, entry, signal);
    // Only what the abort itself caused is the deadline's doing: an answer, or a timeout or 5xx, is kept.
    const cut =
      outcome.kind === 'unknown' && (outcome.reason === 'aborted' || outcome.reason === 'gateway_busy');
    return cut && batchSignal.aborted && !entry.job.signal.aborted ? BATCH_DEADLINE : outcome;
  };
  if (deps.config.gateway.maxConcurrency === 0) return Promise.all(calls.map((entry) => call(entry, true)));
  const slots = await takeGatewaySlots(
    deps.pool,
    calls.map((entry) => entry.job.id),
    leaseMs(deps),
  );
  const withSlot = new Set(slots.map((slot) => slot.job_id));
  try {
    return await Promise.all(calls.map((entry) => call(entry, withSlot.has(entry.job.id))));
  } finally {
    await freeGatewaySlots(deps.pool, slots);
  }
}
