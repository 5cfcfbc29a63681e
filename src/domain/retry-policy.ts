// What happens after a decline: retry on a later business date (configurable backoff in days), or put the
// recurrence on hold. Irreversible declines are never retried; brand rules cap retries in any 30 days.
import { addDays, type IsoDate } from './dates.ts';

export type RetryPolicy = {
  backoffDays: number[];
  maxDeclinesBeforeHold: number;
  /** Max attempts sent to the gateway in any 30 days, per card brand (lower-case). Brands not listed: no cap. */
  brandLimits30d: Record<string, number>;
};

export type DeclineFacts = {
  /** Declines of the current cycle run, this one included. */
  consecutiveDeclines: number;
  irreversible: boolean;
  code: string;
  brand: string;
  /** Attempts sent to the gateway for this recurrence in the last 30 days, this one included. */
  attemptsLast30Days: number;
  today: IsoDate;
};

export type DeclineDecision = { kind: 'retry'; retryOn: IsoDate } | { kind: 'hold'; reason: string };

export function decideAfterDecline(policy: RetryPolicy, facts: DeclineFacts): DeclineDecision {
  if (facts.irreversible) {
    return { kind: 'hold', reason: `recusa irreversível (código ${facts.code}): não será retentada` };
  }
  if (facts.consecutiveDeclines >= policy.maxDeclinesBeforeHold) {
    return {
      kind: 'hold',
      reason: `${facts.consecutiveDeclines} recusas seguidas (último código ${facts.code})`,
    };
  }
  const brandLimit = policy.brandLimits30d[facts.brand.toLowerCase()];
  if (brandLimit !== undefined && facts.attemptsLast30Days >= brandLimit) {
    return {
      kind: 'hold',
      reason: `limite da bandeira ${facts.brand} atingido (${facts.attemptsLast30Days} tentativas em 30 dias, máximo ${brandLimit})`,
    };
  }
  const index = Math.min(facts.consecutiveDeclines, policy.backoffDays.length) - 1;
  const wait = policy.backoffDays[Math.max(0, index)] ?? 1;
  return { kind: 'retry', retryOn: addDays(facts.today, wait) };
}
