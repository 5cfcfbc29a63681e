// The gateway's JSON bodies as zod schemas (the contract is in gateway.ts), shared by the HTTP client,
// which validates what it receives, and the fake gateway, which validates what it is sent.
import { z } from 'zod';

/** 1..255 printable ASCII characters without spaces: anything else cannot travel safely in a header. */
export const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;

const isoDate = z
  .string()
  .regex(/^\d{4}-\d{2}-\d{2}$/, 'must be YYYY-MM-DD')
  .refine((value) => {
    const date = new Date(`${value}T00:00:00Z`);
    return !Number.isNaN(date.getTime()) && date.toISOString().startsWith(value);
  }, 'not a calendar date');

export const chargeRequestBodySchema = z.object({
  amount_cents: z.number().int().positive().max(Number.MAX_SAFE_INTEGER),
  currency: z.string().regex(/^[A-Z]{3}$/, 'must be 3 upper-case letters'),
  card_token: z.string().min(1).max(512),
  description: z.string().max(1_000),
  metadata: z
    .object({
      recorrencia_id: z.string().min(1).max(64),
      ciclo: isoDate,
      tentativa: z.number().int().min(0),
    })
    .catchall(z.string().max(1_000)),
});
/** Written out because zod's inferred catchall type cannot express "tentativa is the one number". */
export type ChargeRequestBody = {
  amount_cents: number;
  currency: string;
  card_token: string;
  description: string;
  metadata: { recorrencia_id: string; ciclo: string; tentativa: number; [extra: string]: string | number };
};

/**
 * What the gateway answers is stored in Postgres text columns, which cannot hold a NUL character: an identifier
 * with one is off-contract (the answer is then unreadable: an unknown outcome), and words for people lose it.
 */
const identifier = z
  .string()
  .min(1)
  .refine((value) => !value.includes('\u0000'), 'contains a NUL character');
const words = z.string().transform((value) => value.replaceAll('\u0000', ''));

export const approvedBodySchema = z.object({
  status: z.literal('approved'),
  charge_id: identifier,
  amount_cents: z.number().int(),
  currency: z.string(),
  idempotency_key: z.string(),
});

export const declinedBodySchema = z.object({
  status: z.literal('declined'),
  charge_id: identifier.nullable(),
  code: identifier.max(16),
  reversible: z.boolean(),
  // The message is for people; a gateway that leaves it out still sent a well-formed decline.
  message: words.default(''),
  idempotency_key: z.string(),
});

export const chargeResponseBodySchema = z.discriminatedUnion('status', [
  approvedBodySchema,
  declinedBodySchema,
]);
export type ChargeResponseBody = z.input<typeof chargeResponseBodySchema>;

/** `{ "error": "...", "message"?: "..." }`, the shape of every non-200 body the contract defines. */
export const errorBodySchema = z.object({ error: identifier, message: words.optional() });
