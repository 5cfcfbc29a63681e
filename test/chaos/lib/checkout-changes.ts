// The checkout changing recurrences while they are being charged: pausing, resuming and cancelling them,
// changing their amount or card, and giving a held one a new card for an operator to reactivate it. Not
// faults, but they race every step of the charge protocol: phase 1's status check and the terms it copies
// into the attempt, a charge in flight, a decline recorded on a paused row, retomar deciding what the pause
// forgives, reativar beside a retry. The run's dates are years ahead of the real clock, so a pause here
// contains none of the run's cycles: every cycle stays owed, and a resumed recurrence must be charged by the
// next day's run exactly as if it had never been paused.
import { setTimeout as sleep } from 'node:timers/promises';
import type { StopWindow, TermsChange } from './checker.ts';
import { query } from './cluster.ts';
import type { Rng } from './prng.ts';
import type { Stack } from './stack.ts';
import { sleepUntil } from './wait.ts';

/**
 * One recurrence changed `at` ms into the charging: paused or cancelled (a paused one resumed `resumeAfter`
 * ms later, never when null), or given a new amount and/or card (`trocar`, a PATCH).
 */
export type ChangePlan =
  | { id: number; at: number; action: 'pausar' | 'cancelar'; resumeAfter: number | null }
  | { id: number; at: number; action: 'trocar'; amountCents: number | null; token: string | null };

/** What the recurrence carries before any change: its seeded card and amount. */
export type Terms = { token: string; amountCents: number };

const TOKEN_KINDS = ['tok_aprova', 'tok_mix', 'tok_recusa_reversivel', 'tok_recusa_irreversivel'] as const;

/** Up to four of the run's active recurrences: most paused and resumed, some left paused, some cancelled. */
export function drawStatusChanges(rng: Rng, activeIds: readonly number[], windowMs: number): ChangePlan[] {
  return rng.sample(activeIds, rng.int(1, 4)).map((id) => {
    const action = rng.chance(0.25) ? 'cancelar' : 'pausar';
    const resumed = action === 'pausar' && rng.chance(0.75);
    return { id, at: rng.int(0, windowMs), action, resumeAfter: resumed ? rng.int(0, 3_000) : null };
  });
}

/** Up to three of the run's recurrences given a new amount, a new card (of any outcome) or both. */
export function drawTermsChanges(rng: Rng, ids: readonly number[], windowMs: number): ChangePlan[] {
  return rng.sample(ids, rng.int(1, 3)).map((id) => {
    const what = rng.pick(['amount', 'card', 'both'] as const);
    return {
      id,
      at: rng.int(0, windowMs),
      action: 'trocar',
      amountCents: what === 'card' ? null : rng.int(100, 99_999),
      token: what === 'amount' ? null : `${rng.pick(TOKEN_KINDS)}_${id}_trocado`,
    };
  });
}

export type ChangesMade = { stops: StopWindow[]; termsChanges: TermsChange[] };

/**
 * Carries out the plans from `t0`, side by side (at most one `trocar` per recurrence), and returns the
 * changes that took effect as the harness saw them. A change refused because the recurrence had left `ativo`
 * (on hold, say, or cancelled) is none.
 */
export async function runChanges(
  stack: Stack,
  plans: ChangePlan[],
  seeded: ReadonlyMap<number, Terms>,
  t0: number,
): Promise<ChangesMade> {
  const made: ChangesMade = { stops: [], termsChanges: [] };
  await Promise.all(
    plans.map(async (plan) => {
      await sleepUntil(t0 + plan.at);
      if (plan.action === 'trocar') {
        const terms = seeded.get(plan.id);
        if (terms === undefined) throw new Error(`recurrence ${plan.id} was not seeded`);
        const change = await changeTerms(stack, plan, terms);
        if (change !== null) made.termsChanges.push(change);
        return;
      }
      const stop = await stopRecurrence(stack, plan);
      if (stop !== null) made.stops.push(stop);
    }),
  );
  return made;
}

async function changeTerms(
  stack: Stack,
  plan: Extract<ChangePlan, { action: 'trocar' }>,
  before: Terms,
): Promise<TermsChange | null> {
  const answer = await stack.change(plan.id, {
    ...(plan.amountCents === null ? {} : { valor_centavos: plan.amountCents }),
    ...(plan.token === null ? {} : { cartao_token: plan.token, bandeira: 'mastercard' }),
  });
  if (answer.refused === true) {
    stack.note(`operator:trocar_refused_${answer.status}`);
    return null;
  }
  // Answered, so committed: every attempt created from here on carries the new terms.
  stack.note('operator:trocar');
  return {
    recorrenciaId: plan.id,
    at: Date.now(),
    valor_centavos: plan.amountCents ?? before.amountCents,
    cartao_token: plan.token ?? before.token,
  };
}

async function stopRecurrence(
  stack: Stack,
  plan: Extract<ChangePlan, { action: 'pausar' | 'cancelar' }>,
): Promise<StopWindow | null> {
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
}

/**
 * The runbook for a recurrence held during the run (an irreversible decline, say), done while charging goes
 * on: the checkout gives it a new card, then an operator reactivates it. Watches for holds for `windowMs`
 * and does it for up to `max` of them, none of `exclude` (held from the start, or given other terms by a
 * plan). Returns the card changes made, for the checker's stale_terms; the reactivated cycle is owed, so the
 * next day's run must charge it with the new card.
 */
export async function reactivateHeld(
  stack: Stack,
  options: {
    exclude: ReadonlySet<number>;
    seeded: ReadonlyMap<number, Terms>;
    windowMs: number;
    max: number;
  },
): Promise<TermsChange[]> {
  const changes: TermsChange[] = [];
  const skip = [...options.exclude];
  const deadline = Date.now() + options.windowMs;
  while (changes.length < options.max && Date.now() < deadline) {
    // The database may be down for a moment (the scenario restarts it): look again.
    const [held] = await query<{ id: number }>(
      stack.url,
      `SELECT id::int FROM checkout_recorrencias WHERE status = 'hold' AND NOT (id = ANY($1::int[]))
       ORDER BY id LIMIT 1`,
      [skip],
    ).catch(() => []);
    if (held === undefined) {
      await sleep(250);
      continue;
    }
    skip.push(held.id);
    const before = options.seeded.get(held.id);
    if (before === undefined) throw new Error(`recurrence ${held.id} was not seeded`);
    const plan = {
      id: held.id,
      at: 0,
      action: 'trocar',
      amountCents: null,
      token: `tok_aprova_${held.id}_novo`,
    } as const;
    const change = await changeTerms(stack, plan, before);
    if (change === null) continue;
    changes.push(change);
    const reactivated = await stack.reactivate(held.id);
    stack.note(
      reactivated.refused === true ? `operator:reativar_refused_${reactivated.status}` : 'operator:reativar',
    );
  }
  return changes;
}
