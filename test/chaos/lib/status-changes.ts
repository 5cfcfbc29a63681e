// The checkout pausing, resuming and cancelling recurrences while they are being charged. Not faults, but
// they race every step of the charge protocol: phase 1's status check, a charge in flight, a decline recorded
// on a paused row, retomar deciding what the pause forgives. The run's dates are years ahead of the real
// clock, so a pause here contains none of the run's cycles: every cycle stays owed, and a resumed recurrence
// must be charged by the next day's run exactly as if it had never been paused.
import type { StopWindow } from './checker.ts';
import type { Rng } from './prng.ts';
import type { Stack } from './stack.ts';
import { sleepUntil } from './wait.ts';

/**
 * One recurrence paused or cancelled `at` ms into the charging; a paused one resumed `resumeAfter` ms later
 * (never when null).
 */
export type StatusPlan = {
  id: number;
  at: number;
  action: 'pausar' | 'cancelar';
  resumeAfter: number | null;
};

/** Up to four of the run's active recurrences: most paused and resumed, some left paused, some cancelled. */
export function drawStatusChanges(rng: Rng, activeIds: readonly number[], windowMs: number): StatusPlan[] {
  return rng.sample(activeIds, rng.int(1, 4)).map((id) => {
    const action = rng.chance(0.25) ? 'cancelar' : 'pausar';
    const resumed = action === 'pausar' && rng.chance(0.75);
    return { id, at: rng.int(0, windowMs), action, resumeAfter: resumed ? rng.int(0, 3_000) : null };
  });
}

/**
 * Carries out the plans from `t0`, side by side, and returns the stops that took effect as the harness saw
 * them (a pausar or cancelar refused because the recurrence had left `ativo`, on hold say, is no stop).
 */
export async function runStatusChanges(stack: Stack, plans: StatusPlan[], t0: number): Promise<StopWindow[]> {
  const windows = await Promise.all(
    plans.map(async (plan): Promise<StopWindow | null> => {
      await sleepUntil(t0 + plan.at);
      const stopped = await stack.transition(plan.id, plan.action);
      if (stopped.refused === true) {
        stack.note(`operator:${plan.action}_refused_${stopped.status}`);
        return null;
      }
      // Answered, so committed: from here on no attempt may be created until retomar is sent.
      const from = Date.now();
      stack.note(`operator:${plan.action}`);
      const status = plan.action === 'pausar' ? 'pausado' : 'cancelado';
      if (plan.resumeAfter === null) return { recorrenciaId: plan.id, status, from, until: null };
      await sleepUntil(from + plan.resumeAfter);
      const until = Date.now();
      const resumed = await stack.transition(plan.id, 'retomar');
      stack.note(resumed.status === 'hold' ? 'operator:retomar_onto_hold' : 'operator:retomar');
      return { recorrenciaId: plan.id, status, from, until };
    }),
  );
  return windows.filter((window) => window !== null);
}
