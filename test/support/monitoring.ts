// The monitoring files (config/prometheus/alerts.yaml, config/grafana/entitlement-operator.json)
// as tests read them: their PromQL expressions, the metric names those expressions use, the
// names an operator's /metrics exposes, and a real Prometheus server to evaluate them with.
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { load } from 'js-yaml';
import type { ControlPlane } from './control-plane.js';
import { binary, repoRoot } from './testbin.js';
import { freePort, waitFor } from './wait.js';

export const alertsFile = path.join(repoRoot, 'config/prometheus/alerts.yaml');
export const alertTestsFile = path.join(repoRoot, 'config/prometheus/alerts_test.yaml');
export const dashboardFile = path.join(repoRoot, 'config/grafana/entitlement-operator.json');

/** Words of PromQL that look like names: aggregations (also written without parentheses), operators, modifiers. */
const keywords = new Set([
  'sum', 'min', 'max', 'avg', 'group', 'stddev', 'stdvar', 'count', 'count_values', 'bottomk', 'topk', 'quantile', 'limitk', 'limit_ratio',
  'and', 'or', 'unless', 'atan2', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'offset', 'inf', 'nan',
]);

/**
 * The metric names an expression uses (PromQL, or a Grafana query with its $variables and
 * label_values()): identifiers left once strings, label matchers, ranges, label lists and
 * numbers are taken out, that are neither functions (followed by a parenthesis) nor keywords.
 */
export function metricNames(expression: string): string[] {
  const rest = expression
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""')
    .replace(/\$\{[^}]*\}|\$\w+/g, ' ')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
    // Grafana's label_values(metric, label): the second argument is a label.
    .replace(/\blabel_values\s*\(([^,)]*),[^)]*\)/g, ' $1 ')
    .replace(/(?<![\w:])\d[\w.]*/g, ' ');
  const names = new Set<string>();
  for (const match of rest.matchAll(/[A-Za-z_:][\w:]*/g)) {
    const after = rest.slice(match.index + match[0].length).trimStart();
    if (after.startsWith('(') || keywords.has(match[0].toLowerCase())) continue;
    names.add(match[0]);
  }
  return [...names].sort();
}

export interface RuleFile {
  groups: { name: string; rules: { alert?: string; record?: string; expr: string; for?: string; labels?: Record<string, string>; annotations?: Record<string, string> }[] }[];
}

export async function alertRules(): Promise<RuleFile['groups'][number]['rules']> {
  const file = load(await readFile(alertsFile, 'utf8')) as RuleFile;
  return file.groups.flatMap((group) => group.rules);
}

interface DashboardTarget {
  expr: string;
  legendFormat?: string;
}
interface DashboardPanel {
  id: number;
  type: string;
  title: string;
  gridPos: { x: number; y: number; w: number; h: number };
  targets?: DashboardTarget[];
  fieldConfig?: { defaults?: { unit?: string } };
}
export interface Dashboard {
  panels: DashboardPanel[];
  templating: { list: { name: string; type: string; query: string | { query: string } }[] };
}

export async function dashboard(): Promise<Dashboard> {
  return JSON.parse(await readFile(dashboardFile, 'utf8')) as Dashboard;
}

/** Every query of the dashboard: its panels' targets and its query variables. */
export function dashboardQueries(board: Dashboard): string[] {
  const panels = board.panels.flatMap((panel) => (panel.targets ?? []).map((target) => target.expr));
  const variables = board.templating.list.filter((v) => v.type === 'query').map((v) => (typeof v.query === 'string' ? v.query : v.query.query));
  return [...panels, ...variables];
}

/** A panel's expression as Prometheus takes it: every variable at "All", the rate interval `rateInterval`. */
export function asPrometheusQuery(expression: string, rateInterval: string): string {
  return expression.replace(/\$__rate_interval|\$\{__rate_interval\}/g, rateInterval).replace(/\$\{?(job|namespace)\}?/g, '.*');
}

/**
 * The metric families a /metrics text exposes with at least one sample, by name; `histogram`
 * and `summary` families also answer to their _bucket, _sum and _count series.
 */
export function exposedMetrics(text: string): Set<string> {
  const types = new Map<string, string>();
  const sampled = new Set<string>();
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)/.exec(line);
    if (type?.[1] && type[2]) types.set(type[1], type[2]);
    else if (line && !line.startsWith('#')) sampled.add(line.split(/[{ ]/)[0] ?? '');
  }
  const names = new Set<string>();
  for (const [name, type] of types) {
    const series = type === 'histogram' || type === 'summary' ? [`${name}_bucket`, `${name}_sum`, `${name}_count`, name] : [name];
    if (series.some((s) => sampled.has(s))) for (const s of series) names.add(s);
  }
  return names;
}

export interface Prometheus {
  url: string;
  /** An instant query; rejects unless Prometheus answers success. */
  query(expression: string): Promise<PromSeries[]>;
  /** A range query, [start, end] in Unix seconds. */
  queryRange(expression: string, start: number, end: number, stepSeconds: number): Promise<PromSeries[]>;
  /** Resolves once every target has been scraped at least `scrapes` times since now. */
  scraped(scrapes?: number): Promise<void>;
}

export interface PromSeries {
  metric: Record<string, string>;
  value?: [number, string];
  values?: [number, string][];
}

/**
 * The built Prometheus server (no web UI; its HTTP API is all this uses) scraping `targets`
 * every `scrapeSeconds`, as a process of the control plane: stopped with it, its data in the
 * plane's directory.
 */
export async function startPrometheus(plane: ControlPlane, targets: { job: string; namespace: string; address: string }[], scrapeSeconds = 1): Promise<Prometheus> {
  const config = {
    global: { scrape_interval: `${scrapeSeconds}s`, evaluation_interval: `${scrapeSeconds}s` },
    scrape_configs: [...new Set(targets.map((t) => t.job))].map((job) => ({
      job_name: job,
      static_configs: targets.filter((t) => t.job === job).map((t) => ({ targets: [t.address], labels: { namespace: t.namespace } })),
    })),
  };
  await writeFile(plane.file('prometheus.yml'), JSON.stringify(config));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const proc = plane.startProcess('prometheus', await binary('prometheus'), [
    `--config.file=${plane.file('prometheus.yml')}`, `--storage.tsdb.path=${plane.file('prometheus-data')}`,
    `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn',
  ]);
  await plane.waitHealthy(proc, `${url}/-/ready`, 60_000);
  const api = async (endpoint: string, params: Record<string, string>): Promise<PromSeries[]> => {
    const response = await fetch(`${url}/api/v1/${endpoint}`, { method: 'POST', body: new URLSearchParams(params) });
    const body = (await response.json()) as { status: string; error?: string; data?: { result: PromSeries[] } };
    if (body.status !== 'success') throw new Error(`Prometheus refused ${params.query ?? ''}: ${body.error ?? response.status}`);
    return body.data?.result ?? [];
  };
  const query = (expression: string): Promise<PromSeries[]> => api('query', { query: expression });
  return {
    url,
    query,
    queryRange: (expression, start, end, step) => api('query_range', { query: expression, start: String(start), end: String(end), step: String(step) }),
    scraped: async (scrapes = 2) => {
      const counts = async (): Promise<number> => Number((await query('min(count_over_time(up[1h]))'))[0]?.value?.[1] ?? 0);
      const goal = (await counts()) + scrapes;
      await waitFor(`${scrapes} scrapes by Prometheus`, async () => ((await counts()) >= goal ? true : undefined), 60_000, 500);
    },
  };
}
