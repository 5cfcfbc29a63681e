// The old system's export (the Django `checkout_recorrencias` table) mapped to our recurrences: the expected
// columns, the status and periodicity mappings, and the validation of one row, which names every column
// that is wrong and why. The cutover moves an unpaid cycle before it to the first cycle on or after it.
import type { Periodicity } from './calendar.ts';
import { isoDate, type IsoDate } from './dates.ts';
import { parseReaisToCents } from './money.ts';
import {
  firstCycleOnOrAfter,
  scheduleProblem,
  type RecurrenceStatus,
  type RecurrenceTerms,
} from './recurrence-rules.ts';

/** The columns of the export, by the old model's names. Only these are read; others are ignored. */
export const LEGACY_COLUMNS = [
  'id',
  'vendedor_id',
  'cliente_id',
  'token_cartao',
  'bandeira',
  'valor',
  'moeda',
  'periodicidade',
  'dia_cobranca',
  'proxima_cobranca',
  'total_parcelas',
  'parcelas_pagas',
  'status',
  'descricao',
  'referencia_externa',
  'created_at',
] as const;
export type LegacyColumn = (typeof LEGACY_COLUMNS)[number];
export const REQUIRED_COLUMNS: readonly LegacyColumn[] = [
  'id',
  'vendedor_id',
  'token_cartao',
  'bandeira',
  'valor',
  'periodicidade',
  'proxima_cobranca',
  'status',
];

/** Old status (lower-cased, accents kept) -> ours. */
export const STATUS_MAPPING: Record<string, RecurrenceStatus> = {
  ativa: 'ativo',
  ativo: 'ativo',
  active: 'ativo',
  pausada: 'pausado',
  pausado: 'pausado',
  suspensa: 'pausado',
  paused: 'pausado',
  inadimplente: 'hold',
  bloqueada: 'hold',
  hold: 'hold',
  cancelada: 'cancelado',
  cancelado: 'cancelado',
  canceled: 'cancelado',
  cancelled: 'cancelado',
  concluida: 'concluido',
  concluída: 'concluido',
  concluido: 'concluido',
  finalizada: 'concluido',
  encerrada: 'concluido',
  completed: 'concluido',
};

export const PERIODICITY_MAPPING: Record<string, Periodicity> = {
  semanal: 'semanal',
  weekly: 'semanal',
  mensal: 'mensal',
  monthly: 'mensal',
  trimestral: 'trimestral',
  quarterly: 'trimestral',
  semestral: 'semestral',
  semiannual: 'semestral',
  anual: 'anual',
  yearly: 'anual',
  annual: 'anual',
};

export type ImportedRecurrence = RecurrenceTerms & {
  id_legado: string;
  ciclos_cobrados: number;
  status: RecurrenceStatus;
  motivo_hold: string | null;
  /** ISO instant, or null to keep the existing row's (or now). */
  criado_em: string | null;
};

export type RowProblem = { coluna: string; motivo: string };
export type LegacyRow = Partial<Record<LegacyColumn, string | null>>;

/** '' , NULL and \N (MySQL's NULL in exports) are absent values. */
function present(value: string | null | undefined): string | null {
  if (value === null || value === undefined) return null;
  const trimmed = value.trim();
  return trimmed === '' || trimmed === 'NULL' || trimmed === '\\N' ? null : trimmed;
}

const DATETIME = /^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?)(Z|[+-]\d{2}:?\d{2})?$/;

/** A DATETIME without a zone is UTC (Django with USE_TZ stores UTC in MySQL). */
function parseInstant(value: string): string | null {
  const match = DATETIME.exec(value);
  if (match === null) return null;
  const instant = new Date(`${match[1]}T${match[2]}${match[3] ?? 'Z'}`);
  return Number.isNaN(instant.getTime()) ? null : instant.toISOString();
}

function integer(value: string, min: number, max: number): number | null {
  if (!/^\d{1,9}$/.test(value)) return null;
  const parsed = Number(value);
  return parsed >= min && parsed <= max ? parsed : null;
}

/**
 * Validates and maps one row. Returns the recurrence, or every problem found (column and reason). With a
 * cutover, an unfinished recurrence whose unpaid cycle is before it starts at the first cycle on or after it
 * (the cycles in between were the old system's: not recorded as skipped).
 */
export function mapLegacyRow(
  row: LegacyRow,
  cutover: IsoDate | null,
): { ok: true; value: ImportedRecurrence } | { ok: false; problems: RowProblem[] } {
  const problems: RowProblem[] = [];
  const fail = (coluna: string, motivo: string) => {
    problems.push({ coluna, motivo });
    return null;
  };
  const text = (column: LegacyColumn, max: number, required: boolean): string | null => {
    const value = present(row[column]);
    if (value === null) return required ? fail(column, 'obrigatório') : null;
    // Postgres cannot store a NUL in text: the whole import would fail on this one line.
    if (value.includes('\u0000')) return fail(column, 'contém o caractere NUL');
    return value.length > max ? fail(column, `mais de ${max} caracteres`) : value;
  };

  const id = text('id', 100, true);
  const vendedor = text('vendedor_id', 100, true);
  const cliente = text('cliente_id', 200, false);
  const token = text('token_cartao', 255, true);
  const brandText = text('bandeira', 20, true)?.toLowerCase() ?? null;
  const bandeira =
    brandText === null || /^[a-z]{2,20}$/.test(brandText)
      ? brandText
      : fail('bandeira', 'não é uma bandeira (visa, elo, ...)');
  const valorText = text('valor', 20, true);
  const valor = valorText === null ? null : parseReaisToCents(valorText);
  if (valorText !== null && valor === null)
    fail('valor', `"${valorText}" não é um valor em reais com até 2 casas (ex.: 49.90)`);
  else if (valor === 0) fail('valor', 'deve ser maior que zero');
  const moeda = (text('moeda', 3, false) ?? 'BRL').toUpperCase();
  if (!/^[A-Z]{3}$/.test(moeda)) fail('moeda', 'deve ter três letras (ex.: BRL)');
  const periodText = text('periodicidade', 30, true);
  const periodicidade = periodText === null ? null : (PERIODICITY_MAPPING[periodText.toLowerCase()] ?? null);
  if (periodText !== null && periodicidade === null) fail('periodicidade', `"${periodText}" desconhecida`);
  const dateText = text('proxima_cobranca', 10, true);
  const proxima =
    dateText === null || isoDate.safeParse(dateText).success
      ? dateText
      : fail('proxima_cobranca', 'não é uma data AAAA-MM-DD');
  // Ignored for weekly rows (the old system may hold a weekday there, 0 for Monday).
  const dayText = periodicidade === 'semanal' ? null : text('dia_cobranca', 2, false);
  const day = dayText === null ? null : integer(dayText, 1, 31);
  if (dayText !== null && day === null) fail('dia_cobranca', 'deve ser um dia de 1 a 31');
  const totalText = text('total_parcelas', 9, false);
  const total = totalText === null || totalText === '0' ? null : integer(totalText, 1, 100_000);
  if (totalText !== null && totalText !== '0' && total === null)
    fail('total_parcelas', 'deve ser um inteiro positivo');
  const paidText = text('parcelas_pagas', 9, false);
  const paid = paidText === null ? 0 : integer(paidText, 0, 100_000);
  if (paid === null) fail('parcelas_pagas', 'deve ser um inteiro >= 0');
  const statusText = text('status', 30, true);
  const status = statusText === null ? null : (STATUS_MAPPING[statusText.toLowerCase()] ?? null);
  if (statusText !== null && status === null) fail('status', `"${statusText}" desconhecido`);
  const createdText = text('created_at', 40, false);
  const criado = createdText === null ? null : parseInstant(createdText);
  if (createdText !== null && criado === null)
    fail('created_at', 'não é uma data e hora AAAA-MM-DD HH:MM:SS');
  const descricao = text('descricao', 2_000, false) ?? '';
  const referencia = text('referencia_externa', 200, false);

  if (periodicidade !== null && proxima !== null && (day !== null || dayText === null)) {
    // Weekly rows have no anchor (a weekday in dia_cobranca is ignored); a monthly row without one is
    // anchored on its next date's day.
    const anchor = periodicidade === 'semanal' ? null : (day ?? Number(proxima.slice(8, 10)));
    const problem = scheduleProblem({ periodicidade, dia_ancora: anchor }, proxima);
    if (problem !== null) fail('dia_cobranca', `${problem.replace(/^[a-z_]+: /, '')}`);
    else if (
      problems.length === 0 &&
      id !== null &&
      vendedor !== null &&
      token !== null &&
      bandeira !== null &&
      valor !== null &&
      paid !== null &&
      status !== null
    ) {
      const open = status === 'ativo' || status === 'pausado' || status === 'hold';
      if (open && total !== null && paid >= total) {
        fail('parcelas_pagas', `${paid} de ${total} parcelas pagas, mas o status é ${statusText ?? ''}`);
      } else {
        const schedule = { periodicidade, dia_ancora: anchor };
        return {
          ok: true,
          value: {
            id_legado: id,
            vendedor_id: vendedor,
            cliente_ref: cliente,
            cartao_token: token,
            bandeira,
            valor_centavos: valor,
            moeda,
            descricao,
            periodicidade,
            dia_ancora: anchor,
            proxima_cobranca:
              open && cutover !== null ? firstCycleOnOrAfter(proxima, cutover, schedule) : proxima,
            total_ciclos: total,
            ciclos_cobrados: paid,
            status,
            motivo_hold:
              status === 'hold' ? `importada do sistema antigo com status ${statusText ?? ''}` : null,
            referencia_externa: referencia,
            criado_em: criado,
          },
        };
      }
    }
  }
  return { ok: false, problems };
}
