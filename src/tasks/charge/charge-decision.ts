// What phase 1 decides for one charge job, given the locked recurrence: nothing to do (and why), resume the
// unresolved attempt, or start a new attempt for the planned cycle. Pure; phase 1 (prepare-attempts.ts) decides
// every job of a batch through here.
import { nextChargeBeforeResume } from '../../domain/recurrence-rules.ts';
import type { Recurrence } from '../../db/recorrencias.ts';
import { planCharge, type ChargePlan } from '../../domain/calendar.ts';
import { laterDate, type IsoDate } from '../../domain/dates.ts';
import type { ChargeJobPayload } from './charge-jobs.ts';

export type ChargeDecision =
  | { kind: 'skip'; reason: string }
  | { kind: 'resume' }
  | { kind: 'new'; plan: ChargePlan; clearsRetry: boolean };

/**
 * `today` is the business date phase 1 runs on. A job runs later than its date when it waited (a queue paused
 * for days, workers down, a dead-lettered job redriven): it charges what is due by then, as the run of that
 * day would, so one late job charges once, for the latest cycle, and the run of the day finds nothing left.
 * `dueOn`: the recurrence's next charge as locked, when phase 1 then moved it past a pause (startAfterPause):
 * the job takes the recurrence when that date was due by the job's, and the moved cycle when it is due by the
 * date the job plans on.
 */
export function decideCharge(
  recurrence: Recurrence | null,
  hasPendingAttempt: boolean,
  job: ChargeJobPayload,
  backbill: boolean,
  today: IsoDate,
  dueOn: IsoDate | undefined = recurrence?.proxima_cobranca,
): ChargeDecision {
  if (recurrence === null) return { kind: 'skip', reason: 'recurrence_not_found' };
  // An unresolved attempt is resumed with its own key, never replaced: the gateway may have executed it. Also
  // when the recurrence was paused, cancelled or put on hold since: that charge was in flight, and only its
  // resumption (lookup, then the same key) can record what the gateway did with it.
  if (hasPendingAttempt) return { kind: 'resume' };
  if (recurrence.status !== 'ativo') return { kind: 'skip', reason: `recurrence_${recurrence.status}` };
  // An active recurrence always has a cycle left (its last approval ends it); a guard for money all the same.
  if (recurrence.total_ciclos !== null && recurrence.ciclos_cobrados >= recurrence.total_ciclos) {
    return { kind: 'skip', reason: 'all_cycles_charged' };
  }
  const planOn = laterDate(job.dataNegocio, today);
  if ((dueOn ?? recurrence.proxima_cobranca) > job.dataNegocio || recurrence.proxima_cobranca > planOn)
    return { kind: 'skip', reason: 'not_due' };
  if (job.motivo === 'retentativa') {
    if (recurrence.proxima_tentativa === null || recurrence.proxima_tentativa > job.dataNegocio) {
      return { kind: 'skip', reason: 'retry_not_due' };
    }
  } else if (recurrence.proxima_tentativa !== null) {
    return { kind: 'skip', reason: 'waiting_for_retry' };
  }
  if (job.motivo === 'retroativa' && job.ciclo !== recurrence.proxima_cobranca) {
    return { kind: 'skip', reason: 'backbill_cycle_already_handled' };
  }
  // A retry charges the declined cycle itself, even when the next cycle fell due while it waited (a weekly
  // cycle with a 7-day backoff): the next daily run then finds that cycle one behind and charges it. So does
  // a charge of a cycle owed from before a pause (attempted then: phase 1 moved any other cycle before the
  // resume's date past it): the cycles after it fell in the pause, and its approval skips them.
  const plan =
    job.motivo === 'retentativa' || nextChargeBeforeResume(recurrence)
      ? { cycle: recurrence.proxima_cobranca, skipped: [] }
      : planCharge(recurrence.proxima_cobranca, planOn, recurrence, backbill);
  return { kind: 'new', plan, clearsRetry: recurrence.proxima_tentativa !== null };
}
