// Watches the connection whose open transaction holds a periodic task run's lock. The lock ends with that
// connection; a run that went on without it could overlap a retry or a manual run of the same (task, date),
// so the watch aborts the run as soon as a check of the connection fails.
import type { CommonQueryMethods } from 'slonik';
import { probeTaskRunLock } from '../db/task-runs.ts';
import type { Logger } from '../log.ts';

/** How long a check may wait for its answer, at least (a loaded server can be slow to answer SELECT 1). */
const MIN_ANSWER_WITHIN_MS = 10_000;

export class RunLockLostError extends Error {
  constructor(cause: unknown) {
    super(
      `lost the run lock: the connection holding it ended (${(cause as Error).message}); the run stops so that no other run of its task and date overlaps it (a job's retry redoes it alone; a command-line run must be started again)`,
      { cause },
    );
    this.name = 'RunLockLostError';
  }
}

export type RunLockWatch = {
  /** Aborted with a RunLockLostError when a check of the lock's connection fails. */
  lost: AbortSignal;
  /** Stops checking, after the check in flight (if any) so the connection is free for the unlock. */
  stop(): Promise<void>;
};

export function watchRunLock(session: CommonQueryMethods, everyMs: number, log: Logger): RunLockWatch {
  const answerWithinMs = Math.max(everyMs, MIN_ANSWER_WITHIN_MS);
  const lost = new AbortController();
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let checking: Promise<void> = Promise.resolve();

  const check = async () => {
    let deadline: NodeJS.Timeout | undefined;
    try {
      // A connection cut without a word (no FIN, no RST) would leave the check waiting for ever, and the
      // run's end waiting for the check: no answer in time counts as an ended connection.
      const silent = new Promise<never>((_, reject) => {
        deadline = setTimeout(
          () => reject(new Error(`no answer within ${answerWithinMs} ms`)),
          answerWithinMs,
        );
      });
      await Promise.race([probeTaskRunLock(session), silent]);
    } catch (error) {
      // Recorded even after stop(): the unlock that follows must not queue a COMMIT behind a dead connection.
      const reason = new RunLockLostError(error);
      log.error({ err: error }, reason.message);
      lost.abort(reason);
      return;
    } finally {
      clearTimeout(deadline);
    }
    schedule();
  };
  function schedule() {
    if (stopped) return;
    timer = setTimeout(() => (checking = check()), everyMs);
    // The run itself keeps the process alive; a pending check must not keep a finished command running.
    timer.unref();
  }

  schedule();
  return {
    lost: lost.signal,
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await checking;
    },
  };
}
