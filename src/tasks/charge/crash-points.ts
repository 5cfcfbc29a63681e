// Test-only crash points on the charge path (and after each page of the morning fan-out). When RECORRENCIAS_TEST_CRASH_POINTS is set (e.g.
// "after_phase1:3,in_phase3:1") the process kills itself with SIGKILL the Nth time it reaches the named
// point, so fault tests can reproduce a crash at an exact place. Unset (always, in production) it does nothing.
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
