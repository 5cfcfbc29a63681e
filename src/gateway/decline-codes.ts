// Which decline codes must never be retried. Brazilian issuers answer with the return codes standardised
// by ABECS (Normativo ABECS nº 21, in force since 15 July 2020, v3 of April 2023), which splits them into
// REVERSÍVEL (may be retried later) and IRREVERSÍVEL (retrying is forbidden and fined by the brands).
//
// The list below is the union of the codes marked IRREVERSÍVEL in every brand table (Elo, Visa,
// Mastercard/Hiper) of the normativo, as republished by the acquirers (Cielo "Códigos de retorno ABECS",
// PayZu "Códigos de retorno ABECS"), keeping only codes that are irreversible wherever they appear, plus two
// ISO 8583 codes some gateways still pass through untranslated (07, 15). Deliberately NOT listed:
//   04  ABECS redefined it as REVERSÍVEL ("refazer a transação", the issuer asks for a retry);
//   62  reversible for a temporary block (e.g. an overdue bill), irreversible only for a domestic card
//       used abroad: the gateway's `reversible` flag is what tells the two apart;
//   78  reversible: a new card the holder has not unlocked yet;
//   Amex's three-digit codes: the gateway's flag covers them.
// The engine treats a decline as irreversible if the gateway says so OR the code is here (defence in depth),
// so an entry that is missing only costs a retry the gateway flag would already have prevented.

const IRREVERSIBLE_CODES: ReadonlyMap<string, string> = new Map([
  ['07', 'pick up card, special conditions (ISO 8583)'],
  ['12', 'card error'],
  ['13', 'invalid transaction amount'],
  ['14', 'invalid card number / card does not belong to the issuer'],
  ['15', 'no such issuer (ISO 8583)'],
  ['19', 'acquirer problem'],
  ['23', 'invalid instalment amount'],
  ['30', 'message format error'],
  ['41', 'lost card'],
  ['43', 'stolen card'],
  ['46', 'account closed'],
  ['54', 'expired card / invalid expiry date'],
  ['56', 'invalid card number (Elo)'],
  ['57', 'transaction not permitted for the card (incl. confirmed fraud, legal block)'],
  ['58', 'invalid merchant'],
  ['63', 'security violation'],
  ['64', 'amount below the minimum'],
  ['76', 'invalid destination account'],
  ['77', 'invalid origin account'],
  ['N7', 'invalid security code (Visa)'],
  ['R0', 'holder stopped this recurring payment (Visa)'],
  ['R1', 'holder stopped all recurring payments to the merchant (Visa)'],
  ['R3', 'holder revoked all recurring authorisations (Visa)'],
]);

/** "4", "004" and " 04 " are the same code as "04"; letters are compared upper-case. */
export function normalizeDeclineCode(code: string): string {
  const trimmed = code.trim().toUpperCase();
  if (/^\d+$/.test(trimmed)) return String(Number(trimmed)).padStart(2, '0');
  return trimmed;
}

/** True when the code is on the ABECS irreversible list: such a decline must never be retried. */
export function isIrreversibleDeclineCode(code: string): boolean {
  return IRREVERSIBLE_CODES.has(normalizeDeclineCode(code));
}

/** The engine's rule: irreversible if the gateway says so or the code is on the list. */
export function isIrreversibleDecline(decline: { code: string; reversible: boolean }): boolean {
  return !decline.reversible || isIrreversibleDeclineCode(decline.code);
}
