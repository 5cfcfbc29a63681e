// Runs the service's roles as real processes (`node dist/main.js <role>`) and restarts them when they die,
// as a process manager would in production. Tells crashes apart by the exit the supervisor sees: a crash
// point is a SIGKILL the process sent itself (its last stderr line says which point); harness kills are noted.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { SERVICE_ROOT } from './cluster.ts';
import { until } from './wait.ts';

export type LogLine = Record<string, unknown> & { msg?: string; level?: number; incarnation: number };

export type ExitCause = 'crash_point' | 'harness_kill' | 'requested_stop' | 'unexpected';

export type ExitRecord = {
  slot: string;
  incarnation: number;
  pid: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  at: number;
  cause: ExitCause;
  crashPoint?: string;
};

export type SlotOptions = {
  role: string;
  env: Record<string, string>;
  /** Crash points (`point:n`) armed one at a time: an incarnation gets the first one not yet fired, so an
   * arm survives an incarnation that died otherwise (external kill) before reaching it. */
  arms?: string[];
  /** Extra arguments after the role (for `run`). */
  args?: string[];
};

export type Slot = {
  name: string;
  role: string;
  incarnation(): number;
  pid(): number | undefined;
  lines: LogLine[];
  /** stderr of every incarnation, in order. */
  stderr: string[];
  /** Resolves with the first line (of any incarnation from `fromIncarnation`) matching `predicate`. */
  waitForLog(
    predicate: (line: LogLine) => boolean,
    timeoutMs: number,
    fromIncarnation?: number,
  ): Promise<LogLine>;
  /** kill -9 from outside; the supervisor restarts the role. Resolves once it has exited. */
  kill9(): Promise<void>;
  freeze(): void;
  thaw(): void;
  /** SIGTERM without restart; resolves with the exit. */
  stop(timeoutMs?: number): Promise<ExitRecord | undefined>;
};

export type Supervisor = {
  start(name: string, options: SlotOptions): Slot;
  slots: Map<string, Slot>;
  exits: ExitRecord[];
  /**
   * Every crash point armed, in order per slot, the incarnation it fired in (confirmed by SIGKILL), and how
   * many incarnations carrying it the harness killed before it could fire.
   */
  armed: Array<{ slot: string; arm: string; firedIn?: number; preemptedByKill?: number }>;
  stopAll(): Promise<void>;
};

const CRASH_MARK = /\{"crashPoint":"([a-z_0-9]+)","nth":(\d+),"pid":(\d+)\}/;

export function createSupervisor(options: { runDir: string; restartDelayMs?: number }): Supervisor {
  const slots = new Map<string, Slot>();
  const exits: ExitRecord[] = [];
  const armed: Supervisor['armed'] = [];
  let shuttingDown = false;

  function start(name: string, slotOptions: SlotOptions): Slot {
    const lines: LogLine[] = [];
    const stderr: string[] = [];
    const waiters = new Set<{
      predicate: (line: LogLine) => boolean;
      from: number;
      resolve: (l: LogLine) => void;
    }>();
    let child: ChildProcess | undefined;
    let incarnation = -1;
    let expectedKill = false;
    let stopping = false;
    let launchedAt = 0;
    let restartDelayMs = options.restartDelayMs ?? 300;
    let exited: Promise<ExitRecord> = Promise.resolve(undefined as unknown as ExitRecord);
    const arms: Supervisor['armed'] = (slotOptions.arms ?? []).map((arm) => ({ slot: name, arm }));
    armed.push(...arms);

    const launch = () => {
      incarnation += 1;
      launchedAt = Date.now();
      const me = incarnation;
      const arm = arms.find((candidate) => candidate.firedIn === undefined);
      const env: Record<string, string> = { PATH: process.env.PATH ?? '', ...slotOptions.env };
      if (arm !== undefined) env.RECORRENCIAS_TEST_CRASH_POINTS = arm.arm;
      const proc = spawn(process.execPath, ['dist/main.js', slotOptions.role, ...(slotOptions.args ?? [])], {
        cwd: SERVICE_ROOT,
        env,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      child = proc;
      const out: WriteStream = createWriteStream(join(options.runDir, `${name}.${me}.out.log`));
      const err: WriteStream = createWriteStream(join(options.runDir, `${name}.${me}.err.log`));
      stderr[me] = '';
      let partial = '';
      proc.stdout?.on('data', (chunk: Buffer) => {
        out.write(chunk);
        partial += chunk.toString('utf8');
        const complete = partial.split('\n');
        partial = complete.pop() ?? '';
        for (const raw of complete) {
          if (raw.trim() === '') continue;
          let parsed: Record<string, unknown>;
          try {
            parsed = JSON.parse(raw) as Record<string, unknown>;
          } catch {
            parsed = { msg: raw };
          }
          const line: LogLine = { ...parsed, incarnation: me };
          lines.push(line);
          for (const waiter of [...waiters]) {
            if (me >= waiter.from && waiter.predicate(line)) {
              waiters.delete(waiter);
              waiter.resolve(line);
            }
          }
        }
      });
      proc.stderr?.on('data', (chunk: Buffer) => {
        err.write(chunk);
        stderr[me] = (stderr[me] ?? '') + chunk.toString('utf8');
      });
      exited = new Promise<ExitRecord>((resolve) => {
        proc.once('exit', (code, signal) => {
          out.end();
          err.end();
          const mark = CRASH_MARK.exec(stderr[me] ?? '');
          const selfKilled = signal === 'SIGKILL' && mark !== null && Number(mark[3]) === proc.pid;
          const cause: ExitCause = selfKilled
            ? 'crash_point'
            : expectedKill && signal === 'SIGKILL'
              ? 'harness_kill'
              : stopping
                ? 'requested_stop'
                : 'unexpected';
          expectedKill = false;
          if (selfKilled && arm !== undefined && arm.arm.startsWith(`${mark?.[1]}:`)) arm.firedIn = me;
          if (cause === 'harness_kill' && arm !== undefined && arm.firedIn === undefined)
            arm.preemptedByKill = (arm.preemptedByKill ?? 0) + 1;
          const record: ExitRecord = {
            slot: name,
            incarnation: me,
            pid: proc.pid ?? -1,
            code,
            signal,
            at: Date.now(),
            cause,
            ...(selfKilled && mark?.[1] !== undefined ? { crashPoint: mark[1] } : {}),
          };
          exits.push(record);
          if (child === proc) child = undefined;
          resolve(record);
          if (!stopping && !shuttingDown) {
            // Back off when a role keeps dying at start (as a process manager would), reset once it ran a while.
            restartDelayMs =
              Date.now() - launchedAt < 3_000
                ? Math.min(restartDelayMs * 2, 5_000)
                : (options.restartDelayMs ?? 300);
            void sleep(restartDelayMs).then(() => {
              if (!stopping && !shuttingDown) launch();
            });
          }
        });
      });
    };

    const slot: Slot = {
      name,
      role: slotOptions.role,
      incarnation: () => incarnation,
      pid: () => child?.pid,
      lines,
      stderr,
      waitForLog: (predicate, timeoutMs, fromIncarnation = 0) => {
        const found = lines.find((line) => line.incarnation >= fromIncarnation && predicate(line));
        if (found !== undefined) return Promise.resolve(found);
        return new Promise((resolve, reject) => {
          const waiter = { predicate, from: fromIncarnation, resolve: (line: LogLine) => resolve(line) };
          waiters.add(waiter);
          setTimeout(() => {
            if (!waiters.delete(waiter)) return;
            reject(new Error(`${name}: no matching log line within ${timeoutMs} ms (see ${options.runDir})`));
          }, timeoutMs).unref();
        });
      },
      kill9: async () => {
        const proc = child;
        if (proc === undefined) return;
        expectedKill = true;
        const done = exited;
        proc.kill('SIGKILL');
        await done;
      },
      freeze: () => void child?.kill('SIGSTOP'),
      thaw: () => void child?.kill('SIGCONT'),
      stop: async (timeoutMs = 30_000) => {
        stopping = true;
        const proc = child;
        if (proc === undefined) return undefined;
        const done = exited;
        proc.kill('SIGCONT');
        proc.kill('SIGTERM');
        let timer: NodeJS.Timeout | undefined;
        const record = await Promise.race([
          done,
          new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), timeoutMs))),
        ]);
        clearTimeout(timer);
        if (record === undefined) {
          proc.kill('SIGKILL');
          return done;
        }
        return record;
      },
    };
    launch();
    slots.set(name, slot);
    return slot;
  }

  return {
    start,
    slots,
    exits,
    armed,
    stopAll: async () => {
      shuttingDown = true;
      await Promise.all([...slots.values()].map((slot) => slot.stop(20_000)));
      // A slot whose restart was already scheduled may have launched meanwhile: make sure nothing is left.
      await until(
        'every process to exit',
        () => ([...slots.values()].some((s) => s.pid() !== undefined) ? undefined : true),
        5_000,
        50,
      ).catch(async () => {
        for (const slot of slots.values()) await slot.kill9();
      });
    },
  };
}
