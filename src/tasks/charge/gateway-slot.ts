// The cluster-wide cap on concurrent gateway calls: a charge holds one of GATEWAY_MAX_CONCURRENCY slots
// (rows of vagas_gateway) for the duration of its gateway call. When every slot stays taken for a while the
// charge gives up with an unknown outcome ('gateway_busy'): its attempt stays pending and the job retries.
import { setTimeout as sleep } from 'node:timers/promises';
import { freeGatewaySlot, takeGatewaySlot } from '../../db/gateway-slots.ts';
import type { ChargeOutcome } from '../../gateway/gateway.ts';
import type { ChargeDeps, ChargeJob } from './charge-recurrence.ts';

/** How long a charge waits for a free slot before giving up for this attempt of its job. */
function maxWaitMs(deps: ChargeDeps): number {
  return Math.min(10_000, deps.config.charges.hardLimitSeconds * 300);
}

export async function withGatewaySlot(
  deps: ChargeDeps,
  job: ChargeJob,
  call: () => Promise<ChargeOutcome>,
): Promise<ChargeOutcome> {
  if (deps.config.gateway.maxConcurrency === 0) return call();
  // Long enough for a lookup and a charge; a holder that died frees its slot when the lease ends.
  const leaseMs = deps.config.gateway.timeoutMs * 2 + 5_000;
  const deadline = Date.now() + maxWaitMs(deps);
  let slot = await takeGatewaySlot(deps.pool, job.id, leaseMs);
  while (slot === null) {
    if (Date.now() > deadline || job.signal.aborted) return { kind: 'unknown', reason: 'gateway_busy' };
    await sleep(20 + Math.random() * 30);
    slot = await takeGatewaySlot(deps.pool, job.id, leaseMs);
  }
  try {
    return await call();
  } finally {
    await freeGatewaySlot(deps.pool, slot, job.id);
  }
}
