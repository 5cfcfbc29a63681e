// A logger built like the service's (createLogger: redaction, error serializer) whose JSON lines the test reads.
import { Writable } from 'node:stream';
import { createLogger, type Logger } from '../../src/log.ts';

export function capturedLog(level = 'debug'): { log: Logger; lines: string[]; text: () => string } {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(chunk.toString());
      done();
    },
  });
  return {
    log: createLogger({ level, format: 'json', role: 'test', destination }),
    lines,
    text: () => lines.join(''),
  };
}
