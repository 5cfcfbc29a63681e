// The service's one error type: a stable code operators and tests can match on, a message for humans,
// and the underlying cause kept for the logs.
export type ErrorCode =
  | 'CONFIG_INVALID'
  | 'NOT_MIGRATED'
  | 'MIGRATION_EDITED'
  | 'MIGRATION_UNKNOWN'
  | 'DATABASE_UNREACHABLE'
  | 'NODE_TOO_OLD'
  | 'INVALID_INPUT'
  | 'NOT_FOUND'
  | 'CONFLICT'
  | 'UNPROCESSABLE'
  | 'GATEWAY_UNAVAILABLE'
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
