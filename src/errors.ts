// The service's error for refusals and failures callers act on: a stable code operators, the admin API (its
// HTTP status) and tests can match on, a message for humans, and the underlying cause kept for the logs.
// Configuration problems are ConfigError (config.ts); a few modules keep their own error for one condition.
export type ErrorCode =
  | 'NOT_MIGRATED'
  | 'MIGRATION_EDITED'
  | 'MIGRATION_UNKNOWN'
  | 'INVALID_INPUT'
  | 'NOT_FOUND'
  | 'CONFLICT'
  | 'UNPROCESSABLE'
  | 'INTERNAL';

export class AppError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;
  constructor(
    code: ErrorCode,
    message: string,
    options: { cause?: unknown; details?: Record<string, unknown> } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'AppError';
    this.code = code;
    this.details = options.details;
  }
}

export function isAppError(error: unknown, code?: ErrorCode): error is AppError {
  return error instanceof AppError && (code === undefined || error.code === code);
}

/** Process exit codes, documented in the README so supervisors can tell the failures apart. */
export const EXIT = {
  ok: 0,
  failure: 1,
  usage: 2,
  notMigrated: 3,
  forced: 130,
} as const;
