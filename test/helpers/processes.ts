// Runs the built service as real OS processes (`node dist/main.js <command>`, exactly as deployed) and lets
// tests wait on what they log. Every process started here is killed when the test ends.
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Test } from 'tap';

export const PROJECT_ROOT = fileURLToPath(new URL('../../', import.meta.url));

export type LogLine = Record<string, unknown> & { msg?: string; level?: number };

export type ServiceProcess = {
  child: ChildProcess;
  lines: LogLine[];
  stderr(): string;
  stdout(): string;
  /** Resolves with the first log line matching `predicate` (already logged or future); rejects at the deadline. */
  waitForLog(predicate: (line: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  /** Resolves with the exit code and signal once the process has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Sends `signal` and waits for the exit. */
  stop(
    signal?: NodeJS.Signals,
    timeoutMs?: number,
  ): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
};

export function logMessage(message: string | RegExp): (line: LogLine) => boolean {
  return (line) =>
    typeof message === 'string' ? line.msg === message : message.test(String(line.msg ?? ''));
}

export function startService(
  t: Test,
  args: string[],
  env: Record<string, string | undefined>,
  options: { cwd?: string; detached?: boolean } = {},
): ServiceProcess {
  const child = spawn(process.execPath, ['dist/main.js', ...args], {
    cwd: options.cwd ?? PROJECT_ROOT,
    // Only what the test passes, plus PATH: a developer's own .env or DATABASE_URL must not leak in.
    env: { PATH: process.env.PATH, LOG_FORMAT: 'json', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: options.detached ?? false,
  });
  const lines: LogLine[] = [];
  const waiters = new Set<{ predicate: (line: LogLine) => boolean; resolve: (line: LogLine) => void }>();
  let out = '';
  let err = '';
  let partial = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    const text = chunk.toString('utf8');
    out += text;
    partial += text;
    const complete = partial.split('\n');
    partial = complete.pop() ?? '';
    for (const raw of complete) {
      if (raw.trim() === '') continue;
      let line: LogLine;
      try {
        line = JSON.parse(raw) as LogLine;
      } catch {
        line = { msg: raw };
      }
      lines.push(line);
      for (const waiter of [...waiters]) {
        if (waiter.predicate(line)) {
          waiters.delete(waiter);
          waiter.resolve(line);
        }
      }
    }
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    err += chunk.toString('utf8');
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  });

  const describe = () => `\n--- stdout ---\n${out.slice(-4_000)}\n--- stderr ---\n${err.slice(-2_000)}`;
  return {
    child,
    lines,
    stderr: () => err,
    stdout: () => out,
    exited,
    waitForLog: (predicate, timeoutMs = 30_000) => {
      const found = lines.find(predicate);
      if (found !== undefined) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const waiter = { predicate, resolve };
        waiters.add(waiter);
        const timer = setTimeout(() => {
          waiters.delete(waiter);
          reject(new Error(`no matching log line within ${timeoutMs} ms${describe()}`));
        }, timeoutMs);
        void exited.then(() => {
          // Lines are parsed before 'exit' fires; give the last chunk a turn, then fail fast.
          setImmediate(() => {
            if (!waiters.has(waiter)) return;
            waiters.delete(waiter);
            clearTimeout(timer);
            reject(new Error(`process exited before logging the expected line${describe()}`));
          });
        });
        const original = waiter.resolve;
        waiter.resolve = (line) => {
          clearTimeout(timer);
          original(line);
        };
      });
    },
    stop: async (signal = 'SIGTERM', timeoutMs = 30_000) => {
      child.kill(signal);
      const timeout = new Promise<never>((_, reject) =>
        setTimeout(
          () => reject(new Error(`process did not exit within ${timeoutMs} ms after ${signal}${describe()}`)),
          timeoutMs,
        ).unref(),
      );
      return Promise.race([exited, timeout]);
    },
  };
}

/** Polls `probe` until it returns a value that is not undefined, or rejects at the deadline. */
export async function eventually<T>(
  probe: () => Promise<T | undefined>,
  timeoutMs = 30_000,
  intervalMs = 100,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `condition not met within ${timeoutMs} ms${lastError instanceof Error ? `: ${lastError.message}` : ''}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
