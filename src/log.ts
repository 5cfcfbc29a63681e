// Structured logging: pino JSON lines carrying the role (and job/task context through child loggers),
// or readable colour output for a developer's terminal. Card tokens and secrets never reach a log line.
import pino, { type Logger } from 'pino';
import pretty from 'pino-pretty';

export type { Logger } from 'pino';

/** Field paths that may hold card tokens, credentials or signatures, at the top level or one object deep. */
const SECRET_FIELDS = [
  'cartao_token',
  'cardToken',
  'token',
  'authorization',
  'password',
  'secret',
  'apiKey',
  'signature',
];
export const REDACT_PATHS = [
  ...SECRET_FIELDS,
  ...SECRET_FIELDS.map((field) => `*.${field}`),
  'req.headers.authorization',
  'req.headers["x-api-key"]',
];

export function createLogger(options: {
  level: string;
  format: 'json' | 'pretty';
  role: string;
  destination?: NodeJS.WritableStream;
}): Logger {
  const settings = {
    level: options.level,
    base: { role: options.role, pid: process.pid },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  if (options.format === 'pretty') {
    const stream = pretty({
      colorize: true,
      sync: true,
      translateTime: 'SYS:HH:MM:ss.l',
      ignore: 'pid,hostname',
    });
    return pino(settings, stream);
  }
  return pino(settings, options.destination ?? pino.destination({ sync: true }));
}
