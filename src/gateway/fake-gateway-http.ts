// Small node:http helpers the fake gateway's routes share: JSON replies and bounded body reading.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { z } from 'zod';

export type Reply = { status: number; body: unknown; headers?: Record<string, string> };

export const MAX_BODY_BYTES = 1_048_576;

/** Writes a JSON reply unless the client is gone (a held or timed-out request may outlive its socket). */
export function send(res: ServerResponse, reply: Reply): void {
  if (res.destroyed || res.writableEnded) return;
  const json = JSON.stringify(reply.body);
  res.writeHead(reply.status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(json),
    ...reply.headers,
  });
  res.end(json);
}

/** The request body as text, or undefined when it exceeds MAX_BODY_BYTES. */
export async function readBody(req: IncomingMessage): Promise<string | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) return undefined;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

export const invalid = (message: string): Reply => ({
  status: 400,
  body: { error: 'invalid_request', message },
});

export function zodMessage(error: z.ZodError): string {
  return error.issues.map((issue) => `${issue.path.join('.') || '(body)'}: ${issue.message}`).join('; ');
}
