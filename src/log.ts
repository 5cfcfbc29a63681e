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

/**
 * Error fields that carry a query's values or rows, or a parsed input (a URL with its password): slonik puts
 * the query (with its values, card tokens among them) and the offending row on its errors, and Node's URL
 * errors keep their input. Dropped wherever they appear in a logged error, its cause included.
 */
const ERROR_FIELDS_WITH_DATA = new Set(['values', 'row', 'input', 'parameters']);
/**
 * Driver objects attached to errors: pg-pool puts the whole pg Client on the error of an idle connection that
 * died (pg-boss's pool logs it on every Postgres restart), ~2.8 kB of driver state per line with the
 * connection's cancel key and its queued queries. Left out of the logged error.
 */
const ERROR_FIELDS_OMITTED = new Set(['client']);
// Postgres describes a CHECK or NOT NULL violation with the whole row: "Failing row contains (...)".
const ROW_DETAIL = /^Failing row contains/;

function scrubError(value: unknown, depth: number): unknown {
  if (value === null || typeof value !== 'object') return value;
  // Deeper than any error chain of ours: cut rather than pass through unscrubbed.
  if (depth > 6) return '[truncated]';
  if (Array.isArray(value)) return value.map((item) => scrubError(item, depth + 1));
  const scrubbed: Record<string, unknown> = {};
  for (const [key, field] of Object.entries(value)) {
    if (ERROR_FIELDS_OMITTED.has(key)) continue;
    if (ERROR_FIELDS_WITH_DATA.has(key) || (key === 'detail' && ROW_DETAIL.test(String(field)))) {
      scrubbed[key] = '[redacted]';
    } else {
      scrubbed[key] = scrubError(field, depth + 1);
    }
  }
  return scrubbed;
}

/** pino's error serializer (message, type, stack, own fields, cause) without the fields that carry data. */
export function serializeError(error: unknown): unknown {
  return error instanceof Error ? scrubError(pino.stdSerializers.err(error), 0) : scrubError(error, 0);
}

/**
 * An error already serialized elsewhere (pg-boss keeps a failed job's error, own fields and cause included, as
 * the job's output) without the fields that carry data, as a log line would have it.
 */
export function redactSerializedError(value: unknown): unknown {
  return scrubError(value, 0);
}

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
    serializers: { err: serializeError },
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
