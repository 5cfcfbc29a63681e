// Test-only hooks on the charge path, inert unless their environment variable is set (a worker with
// NODE_ENV=production refuses to start with any armed; another logs a warning):
// - RECORRENCIAS_TEST_CRASH_POINTS (e.g. "after_phase1:3,in_phase3:1"): the process kills itself with
//   SIGKILL the Nth time it reaches the named point, so fault tests reproduce a crash at an exact place;
// - RECORRENCIAS_TEST_MUTANTS (e.g. "no_fence"): deliberately broken variants of the protocol, so the fault
//   suite can prove it catches them: `no_fence` commits phase 3 even when the job completion matched no row;
//   `fresh_key` abandons an unresolved attempt and charges under a new key instead of resuming it;
//   `charge_paused` charges a paused recurrence as if it were active.
export const CRASH_POINTS = [
  'before_phase1',
  'after_phase1',
  'after_gateway',
  'in_phase3',
  'after_commit',
  'fanout_after_page',
] as const;
export type CrashPoint = (typeof CRASH_POINTS)[number];

const armed = parseArmed(process.env.RECORRENCIAS_TEST_CRASH_POINTS);
const reached = new Map<CrashPoint, number>();

function parseArmed(value: string | undefined): Map<CrashPoint, number> {
  const points = new Map<CrashPoint, number>();
  for (const entry of (value ?? '').split(',').filter(Boolean)) {
    const [name, nth] = entry.split(':');
    if (
      !(CRASH_POINTS as readonly string[]).includes(name ?? '') ||
      !Number.isInteger(Number(nth)) ||
      Number(nth) < 1
    ) {
      throw new Error(
        `RECORRENCIAS_TEST_CRASH_POINTS: bad entry "${entry}" (expected <point>:<n>, points: ${CRASH_POINTS.join(', ')})`,
      );
    }
    points.set(name as CrashPoint, Number(nth));
  }
  return points;
}

export function crashPoint(point: CrashPoint): void {
  if (armed.size === 0) return;
  const count = (reached.get(point) ?? 0) + 1;
  reached.set(point, count);
  if (armed.get(point) === count) {
    process.stderr.write(`${JSON.stringify({ crashPoint: point, nth: count, pid: process.pid })}\n`);
    process.kill(process.pid, 'SIGKILL');
  }
}

export const MUTANTS = ['no_fence', 'fresh_key', 'charge_paused'] as const;
export type Mutant = (typeof MUTANTS)[number];

const mutants = parseMutants(process.env.RECORRENCIAS_TEST_MUTANTS);

function parseMutants(value: string | undefined): Set<Mutant> {
  const set = new Set<Mutant>();
  for (const name of (value ?? '').split(',').filter(Boolean)) {
    if (!(MUTANTS as readonly string[]).includes(name)) {
      throw new Error(`RECORRENCIAS_TEST_MUTANTS: unknown mutant "${name}" (known: ${MUTANTS.join(', ')})`);
    }
    set.add(name as Mutant);
  }
  return set;
}

export function mutantActive(mutant: Mutant): boolean {
  return mutants.has(mutant);
}

/** What a worker reports at start when any test hook is armed. */
export function armedTestHooks(): string[] {
  return [
    ...[...armed.keys()].map((point) => `crash:${point}`),
    ...[...mutants].map((mutant) => `mutant:${mutant}`),
  ];
}
