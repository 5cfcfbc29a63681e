// prometheus/alerts.yml checked offline: the rule-file structure Prometheus loads, every metric an expression
// reads is one /metrics exports, and every alert links to its own entry of the README's Runbook section.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { parse } from 'yaml';
import { createMetricsRegistry } from '../../src/ops/metrics.ts';
import {
  RUN_LATE_ALERTS,
  RUN_LATE_FOR_MINUTES,
  RUN_LATE_GRACE_MINUTES,
} from '../../src/ops/run-late-alerts.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const rules = parse(readFileSync(`${ROOT}prometheus/alerts.yml`, 'utf8')) as unknown;
const readme = readFileSync(`${ROOT}README.md`, 'utf8');

type Rule = {
  alert: string;
  expr: string;
  for?: string;
  labels: { severity: string } & Record<string, string>;
  annotations: { summary: string; description: string; runbook_url: string } & Record<string, string>;
};

const RULE_KEYS = new Set(['alert', 'expr', 'for', 'keep_firing_for', 'labels', 'annotations']);
const DURATION = /^(\d+(ms|s|m|h|d|w|y))+$/;
/** PromQL words that look like identifiers but are not metric names. */
const KEYWORDS = new Set([
  'and',
  'or',
  'unless',
  'bool',
  'offset',
  'atan2',
  'inf',
  'nan',
  // Modifiers that may come without a label list (`group_left` alone).
  'group_left',
  'group_right',
]);

/** The alert's anchor in the README: `RecorrenciasDailyRunLate` -> `runbook-recorrencias-daily-run-late`. */
function anchorOf(alert: string): string {
  return `runbook-${alert.replace(/([a-z0-9])([A-Z])/g, '$1-$2').toLowerCase()}`;
}

/** Metric names read by a PromQL expression: identifiers outside strings, matchers, ranges and label lists. */
function metricNames(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""')
    .replace(/\{[^}]*\}/g, '')
    .replace(/\[[^\]]*\]/g, '')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, '');
  const names: string[] = [];
  for (const match of stripped.matchAll(/(?<![\w.:])[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
    const isCall = stripped
      .slice(match.index + match[0].length)
      .trimStart()
      .startsWith('(');
    if (!isCall && !KEYWORDS.has(match[0].toLowerCase())) names.push(match[0]);
  }
  return names;
}

/** Every sample name /metrics can print: families plus the suffixes of histograms and summaries. */
async function exportedNames(): Promise<Set<string>> {
  const metrics = await createMetricsRegistry().registry.getMetricsAsJSON();
  const suffixes: Record<string, string[]> = {
    histogram: ['_bucket', '_sum', '_count'],
    summary: ['_sum', '_count'],
  };
  return new Set(
    metrics.flatMap((metric) => [
      metric.name,
      ...(suffixes[metric.type] ?? []).map((s) => `${metric.name}${s}`),
    ]),
  );
}

/** Anchors a reader can link to: explicit `<a id|name="...">` and GitHub's heading slugs. */
function readmeAnchors(markdown: string): Set<string> {
  const anchors = new Set<string>();
  for (const match of markdown.matchAll(/<a\s+(?:id|name)="([^"]+)"/g)) anchors.add(match[1] ?? '');
  for (const match of markdown.matchAll(/^#{1,6}\s+(.+)$/gm)) {
    const text = (match[1] ?? '').replace(/<[^>]*>/g, '').trim();
    anchors.add(
      text
        .toLowerCase()
        .replace(/[^\p{L}\p{N}\s_-]/gu, '')
        .replace(/\s/g, '-'),
    );
  }
  return anchors;
}

function allRules(): Rule[] {
  const file = rules as { groups?: Array<{ name?: unknown; rules?: unknown }> };
  return (file.groups ?? []).flatMap((group) => (Array.isArray(group.rules) ? (group.rules as Rule[]) : []));
}

t.test('the metric-name extractor reads PromQL as intended', async (t) => {
  t.same(
    metricNames(
      'sum by (queue) (rate(a_total{x="y", z=~"b|c"}[5m] offset 1h)) > 1e3 and on (q) b == 0 unless ignoring(x) c:rule',
    ),
    ['a_total', 'b', 'c:rule'],
  );
  t.same(metricNames('absent(x_y) or vector(0)'), ['x_y']);
});

t.test('the rule file has the structure Prometheus loads', async (t) => {
  const file = rules as { groups?: unknown };
  t.ok(Array.isArray(file.groups) && file.groups.length > 0, 'groups');
  t.same(Object.keys(rules as object), ['groups'], 'nothing beside groups');
  const groupNames = new Set<string>();
  for (const group of file.groups as Array<Record<string, unknown>>) {
    t.type(group.name, 'string', 'group name');
    t.notOk(groupNames.has(group.name as string), 'group names are unique');
    groupNames.add(group.name as string);
    t.ok(
      Array.isArray(group.rules) && (group.rules as unknown[]).length > 0,
      `${String(group.name)} has rules`,
    );
  }
  const names = new Set<string>();
  for (const rule of allRules()) {
    t.match(rule.alert, /^[A-Z][A-Za-z0-9]+$/, `${rule.alert}: alert name`);
    t.notOk(names.has(rule.alert), `${rule.alert}: unique`);
    names.add(rule.alert);
    t.same(
      Object.keys(rule).filter((key) => !RULE_KEYS.has(key)),
      [],
      `${rule.alert}: no unknown keys`,
    );
    t.ok(typeof rule.expr === 'string' && rule.expr.trim().length > 0, `${rule.alert}: expr`);
    if (rule.for !== undefined) t.match(rule.for, DURATION, `${rule.alert}: for is a duration`);
    t.ok(['critical', 'warning'].includes(rule.labels?.severity), `${rule.alert}: labels.severity`);
    for (const key of ['summary', 'description', 'runbook_url'] as const) {
      t.ok(
        typeof rule.annotations?.[key] === 'string' && rule.annotations[key].length > 0,
        `${rule.alert}: ${key}`,
      );
    }
  }
  for (const required of [
    'RecorrenciasDailyRunLate',
    'RecorrenciasRetryRunLate',
    'RecorrenciasDeadLetterNotEmpty',
    'RecorrenciasAttemptPendingTooLong',
    'RecorrenciasAttemptBlocked',
    'RecorrenciasNoticeOutboxBacklog',
    'RecorrenciasNoSchedulerAlive',
    'RecorrenciasNoWorkerAlive',
  ]) {
    t.ok(names.has(required), `alert ${required} is defined`);
  }
});

t.test('every expression reads only metrics that /metrics exports', async (t) => {
  const exported = await exportedNames();
  for (const rule of allRules()) {
    const used = metricNames(rule.expr);
    t.ok(used.length > 0, `${rule.alert} reads a metric`);
    t.same(
      used.filter((name) => !exported.has(name)),
      [],
      `${rule.alert}: every metric is exported`,
    );
  }
});

t.test('every alert links to its own Runbook entry in README.md', async (t) => {
  const anchors = readmeAnchors(readme);
  const alerts = allRules().map((rule) => rule.alert);
  for (const rule of allRules()) {
    const anchor = anchorOf(rule.alert);
    t.equal(rule.annotations.runbook_url, `README.md#${anchor}`, `${rule.alert}: runbook_url`);
    t.ok(
      anchors.has(anchor),
      `README.md has the anchor ${anchor} (the Runbook section's entry for ${rule.alert})`,
    );
  }
  const stale = [...anchors].filter(
    (anchor) => anchor.startsWith('runbook-') && !alerts.some((alert) => anchorOf(alert) === anchor),
  );
  t.same(stale, [], 'no Runbook entry for an alert that does not exist');
});

t.test(
  'the run-late alerts `check` reasons about are the rules, with their grace and duration',
  async (t) => {
    const rules = allRules().filter((rule) => rule.expr.includes('recorrencias_task_due_minutes'));
    t.same(
      rules.map((rule) => rule.alert).sort(),
      Object.values(RUN_LATE_ALERTS).sort(),
      'every time-of-day alert is known to check',
    );
    for (const [task, alert] of Object.entries(RUN_LATE_ALERTS)) {
      const rule = rules.find((candidate) => candidate.alert === alert);
      t.match(
        rule?.expr.replace(/\s+/g, ' '),
        `recorrencias_task_due_minutes{task="${task}"} + ${RUN_LATE_GRACE_MINUTES} <=`,
        `${alert}: ${task}, ${RUN_LATE_GRACE_MINUTES} minutes after its time`,
      );
      t.equal(rule?.for, `${RUN_LATE_FOR_MINUTES}m`, `${alert}: for`);
    }
  },
);
