// Money is integer cents end to end; this only formats it for people.
export function formatCents(cents: number, currency = 'BRL'): string {
  return new Intl.NumberFormat('pt-BR', { style: 'currency', currency }).format(cents / 100);
}

/**
 * Parses a decimal amount in reais ("49.90", "49.9", "49") into integer cents, exactly (no floating point).
 * Returns null for anything else: a comma, a sign, more than two decimals, or more than 12 integer digits.
 */
export function parseReaisToCents(value: string): number | null {
  const match = /^(\d{1,12})(?:\.(\d{1,2}))?$/.exec(value.trim());
  if (match === null) return null;
  const [, units = '0', fraction = ''] = match;
  return Number(units) * 100 + Number(fraction.padEnd(2, '0'));
}
