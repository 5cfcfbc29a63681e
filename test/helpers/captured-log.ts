// A logger built like the service's (createLogger: redaction, error serializer) whose lines the test reads.
import { Writable } from 'node:stream';
import { createLogger, type Logger } from '../../src/log.ts';

/** One logged line, parsed; the fields the tests look at. */
export type LogEntry = {
  level: number;
  msg: string;
  [field: string]: unknown;
};

/** `onEntry`, when given, sees each line as it is logged (for a test that acts on a log line). */
export function capturedLog(
  level = 'debug',
  onEntry?: (entry: LogEntry) => void,
): { log: Logger; entries: LogEntry[]; text: () => string } {
  const lines: string[] = [];
  const entries: LogEntry[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(chunk.toString());
      const entry = JSON.parse(chunk.toString()) as LogEntry;
      entries.push(entry);
      onEntry?.(entry);
      done();
    },
  });
  return {
    log: createLogger({ level, format: 'json', role: 'test', destination }),
    entries,
    text: () => lines.join(''),
  };
}
