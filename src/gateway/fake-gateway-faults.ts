// Scripted faults for the fake gateway. A plan names faults by the position of a charge request (1-based,
// counting only POST /v1/charges since the plan was installed) and may add seeded random faults; both are
// deterministic for a given arrival order.
import { createHash } from 'node:crypto';
import { z } from 'zod';

export const FAULT_KINDS = [
  'timeout_before',
  'timeout_after',
  'reset_before',
  'reset_after',
  'error_500_before',
  'error_500_after',
  'rate_limited',
  'slow',
  'decline_reversible',
  'decline_irreversible',
  'hold',
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

/** Faults that answer (or drop the request) without executing the charge. */
export const FAULTS_BEFORE_EXECUTION: ReadonlySet<FaultKind> = new Set([
  'timeout_before',
  'reset_before',
  'error_500_before',
  'rate_limited',
]);

export const DEFAULT_HOLD_MS = 60_000;
export const DEFAULT_DELAY_MS = 2_000;

const milliseconds = z.number().int().min(0).max(3_600_000);
const faultKind = z.enum(FAULT_KINDS);

export const faultPlanSchema = z
  .object({
    rules: z
      .array(
        z.object({
          nth: z.number().int().min(1),
          fault: faultKind,
          holdMs: milliseconds.optional(),
          delayMs: milliseconds.optional(),
        }),
      )
      .default([]),
    random: z
      .object({
        seed: z.number().int(),
        rate: z.number().min(0).max(1),
        kinds: z.array(faultKind).min(1),
        holdMs: milliseconds.optional(),
        delayMs: milliseconds.optional(),
      })
      .optional(),
    /** Defaults for rules that do not set their own. */
    holdMs: milliseconds.optional(),
    delayMs: milliseconds.optional(),
  })
  .refine((plan) => new Set(plan.rules.map((rule) => rule.nth)).size === plan.rules.length, {
    message: 'two rules for the same nth',
    path: ['rules'],
  });
export type FaultPlan = z.input<typeof faultPlanSchema>;

/** The fault chosen for one request, with its timings resolved. */
export type Fault = { kind: FaultKind; holdMs: number; delayMs: number };

export function createFaultPlanner() {
  let plan: z.output<typeof faultPlanSchema> = { rules: [] };
  let counted = 0;

  function resolve(kind: FaultKind, own: { holdMs?: number; delayMs?: number }): Fault {
    return {
      kind,
      holdMs: own.holdMs ?? plan.holdMs ?? DEFAULT_HOLD_MS,
      delayMs: own.delayMs ?? plan.delayMs ?? DEFAULT_DELAY_MS,
    };
  }

  return {
    /** Replaces the plan and restarts the count; throws a ZodError on an invalid plan. */
    install(input: unknown): void {
      plan = faultPlanSchema.parse(input);
      counted = 0;
    },
    clear(): void {
      plan = { rules: [] };
      counted = 0;
    },
    describe(): { plan: z.output<typeof faultPlanSchema>; counted: number } {
      return { plan, counted };
    },

    /** Counts one charge request and returns its fault, if any. Rules win over the random faults. */
    next(): Fault | undefined {
      counted += 1;
      const nth = counted;
      const rule = plan.rules.find((candidate) => candidate.nth === nth);
      if (rule !== undefined) return resolve(rule.fault, rule);
      const random = plan.random;
      if (random === undefined || random.rate === 0) return undefined;
      const digest = createHash('sha256').update(`${random.seed}\u0000${nth}`).digest();
      if (digest.readUIntBE(0, 6) / 2 ** 48 >= random.rate) return undefined;
      const kind = random.kinds[digest.readUIntBE(6, 6) % random.kinds.length];
      return kind === undefined ? undefined : resolve(kind, random);
    },
  };
}
