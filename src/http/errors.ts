// The admin server's single error handler: validation and client errors become 4xx bodies that name the
// problem; anything else is a 500 that reveals nothing internal and is logged with the request id.
import type { FastifyError, FastifyInstance } from 'fastify';
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';
import { isAppError } from '../errors.ts';

const STATUS_BY_CODE = {
  INVALID_INPUT: 400,
  NOT_FOUND: 404,
  CONFLICT: 409,
  UNPROCESSABLE: 422,
  NOT_MIGRATED: 503,
} as const;

export function registerErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((error: FastifyError | Error, request, reply) => {
    if (hasZodFastifySchemaValidationErrors(error)) {
      const issues = error.validation.map((issue) => ({
        field: [error.validationContext, ...issue.instancePath.split('/').filter(Boolean)]
          .filter(Boolean)
          .join('.'),
        message: issue.message,
      }));
      return reply.status(400).send({
        error: 'invalid_request',
        message: issues.map((issue) => `${issue.field}: ${issue.message}`).join('; '),
        issues,
      });
    }
    if (isAppError(error) && error.code in STATUS_BY_CODE) {
      const status = STATUS_BY_CODE[error.code as keyof typeof STATUS_BY_CODE];
      return reply
        .status(status)
        .send({ error: error.code.toLowerCase(), message: error.message, ...error.details });
    }
    const statusCode = (error as FastifyError).statusCode;
    if (statusCode !== undefined && statusCode >= 400 && statusCode < 500) {
      return reply
        .status(statusCode)
        .send({ error: (error as FastifyError).code ?? 'bad_request', message: error.message });
    }
    request.log.error({ err: error, requestId: request.id }, 'request failed');
    return reply
      .status(500)
      .send({ error: 'internal_error', message: 'internal error', requestId: request.id });
  });
  app.setNotFoundHandler((request, reply) =>
    reply
      .status(404)
      .send({ error: 'not_found', message: `no route ${request.method} ${request.url.slice(0, 200)}` }),
  );
}
