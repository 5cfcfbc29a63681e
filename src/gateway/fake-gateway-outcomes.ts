// How the fake gateway decides a charge: a forced outcome (fault rule) first, then the card token's prefix,
// then a seeded mix. The mix depends only on seed + idempotency key, so a run is reproducible whatever the
// order and timing of the requests.
import { createHash } from 'node:crypto';

export type Decision = { status: 'approved' } | { status: 'declined'; code: string; reversible: boolean };

export type Forced = 'decline_reversible' | 'decline_irreversible';

export type MixSettings = { seed: number; declineRate: number; irreversibleShare: number };

/** Codes the seeded mix draws from; they agree with decline-codes.ts (a test checks it). */
export const REVERSIBLE_MIX_CODES = ['51', '05', '61'] as const;
export const IRREVERSIBLE_MIX_CODES = ['14', '54', '57', '41'] as const;

const MESSAGES: Record<string, string> = {
  '05': 'não autorizada: contate a central do seu cartão',
  '14': 'cartão inválido: verifique os dados do cartão',
  '41': 'cartão perdido: não tente novamente',
  '51': 'saldo ou limite insuficiente',
  '54': 'cartão vencido: verifique os dados do cartão',
  '57': 'transação não permitida para o cartão: não tente novamente',
  '61': 'valor excedido: contate a central do seu cartão',
};

export function declineMessage(code: string): string {
  return MESSAGES[code] ?? 'transação recusada';
}

/** Three independent uniforms in [0, 1) and a charge id, all from one digest of seed + key. */
function draws(seed: number, key: string): { decline: number; kind: number; code: number; id: string } {
  const digest = createHash('sha256').update(`${seed}\u0000${key}`).digest();
  const unit = (offset: number) => digest.readUIntBE(offset, 6) / 2 ** 48;
  return { decline: unit(0), kind: unit(6), code: unit(12), id: digest.subarray(18, 28).toString('hex') };
}

/** The charge id the fake gives a key (declines get one too, as most gateways do). */
export function chargeIdFor(seed: number, key: string): string {
  return `ch_${draws(seed, key).id}`;
}

export function decide(
  input: { key: string; cardToken: string; forced?: Forced | undefined },
  mix: MixSettings,
): Decision {
  if (input.forced === 'decline_reversible') return { status: 'declined', code: '51', reversible: true };
  if (input.forced === 'decline_irreversible') return { status: 'declined', code: '14', reversible: false };
  if (input.cardToken.startsWith('tok_recusa_reversivel')) {
    return { status: 'declined', code: '51', reversible: true };
  }
  if (input.cardToken.startsWith('tok_recusa_irreversivel')) {
    return { status: 'declined', code: '14', reversible: false };
  }
  if (input.cardToken.startsWith('tok_aprova')) return { status: 'approved' };

  const drawn = draws(mix.seed, input.key);
  if (drawn.decline >= mix.declineRate) return { status: 'approved' };
  const irreversible = drawn.kind < mix.irreversibleShare;
  const codes = irreversible ? IRREVERSIBLE_MIX_CODES : REVERSIBLE_MIX_CODES;
  const code = codes[Math.floor(drawn.code * codes.length)] ?? codes[0];
  return { status: 'declined', code, reversible: !irreversible };
}
