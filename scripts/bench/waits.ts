// What the Postgres backends of a run were doing while the workers charged, from pg_stat_activity samples of
// the active ones: running (on a core, or waiting for one: Postgres cannot tell), waiting for the WAL to be
// written and flushed (commits), for a lock (row and transaction locks, and the buffer and lock-manager
// locks inside Postgres), for data file I/O, or for the client to send the rest of a statement. The shares
// say where a run stops scaling: CPU, commit rate or locks.

export type BackendState = 'running' | 'wal' | 'locks' | 'io' | 'client' | 'other';

export type BackendShares = Record<BackendState, number> & { samples: number };

/** The state of one active backend, from its `wait_event_type` and `wait_event` (both null when running). */
export function backendState(waitEventType: string | null, waitEvent: string | null): BackendState {
  if (waitEventType === null) return 'running';
  if (waitEvent !== null && waitEvent.startsWith('WAL')) return 'wal';
  if (waitEventType === 'Lock' || waitEventType === 'LWLock') return 'locks';
  if (waitEventType === 'IO') return 'io';
  if (waitEventType === 'Client') return 'client';
  return 'other';
}

/** Counts of states, sample by sample. */
export class BackendSampler {
  readonly #counts: Record<BackendState, number> = {
    running: 0,
    wal: 0,
    locks: 0,
    io: 0,
    client: 0,
    other: 0,
  };
  #samples = 0;

  add(waitEventType: string | null, waitEvent: string | null): void {
    this.#counts[backendState(waitEventType, waitEvent)] += 1;
    this.#samples += 1;
  }

  /** Each state's share of the samples (all 0 without samples). */
  shares(): BackendShares {
    const share = (n: number) => (this.#samples === 0 ? 0 : n / this.#samples);
    const counts = this.#counts;
    return {
      running: share(counts.running),
      wal: share(counts.wal),
      locks: share(counts.locks),
      io: share(counts.io),
      client: share(counts.client),
      other: share(counts.other),
      samples: this.#samples,
    };
  }
}

/** The shares of two sets of samples taken apart, as if sampled together. */
export function mergeShares(a: BackendShares, b: BackendShares): BackendShares {
  const samples = a.samples + b.samples;
  const share = (state: BackendState) =>
    samples === 0 ? 0 : (a[state] * a.samples + b[state] * b.samples) / samples;
  return {
    running: share('running'),
    wal: share('wal'),
    locks: share('locks'),
    io: share('io'),
    client: share('client'),
    other: share('other'),
    samples,
  };
}
