// The metric names the monitoring test finds in PromQL and in /metrics, and how the pods waiting
// at the gate are timed (the gauges read at scrape time, the histogram of waits).
import { GateWaits } from '../../src/controllers/pods/gate-waits.js';
import { annotations, productLabel, schedulingGate } from '../../src/api/marketplace-product.js';
import { Metrics } from '../../src/observability/metrics.js';
import type { CachedPod } from '../../src/verdicts/pod-cache.js';
import { asPrometheusQuery, exposedMetrics, metricNames } from '../support/monitoring.js';

describe('metricNames', () => {
  it.each([
    ['histogram_quantile(0.99, sum by (le) (rate(foo_seconds_bucket{job=~"$job", a="x{y} bar"}[$__rate_interval])))', ['foo_seconds_bucket']],
    ['sum by (namespace, job) (entitlement_leader) < 1 or absent(entitlement_leader)', ['entitlement_leader']],
    ['min by (product) (deadline_seconds{job=~"$job"}) - time() < 4 * 3600', ['deadline_seconds']],
    ['sum(rate(a_total[5m] offset 1h)) by (le) / on (instance) group_left (version) b_info', ['a_total', 'b_info']],
    ['1e3 * d + 0x1F - 2.5e-3 / topk(3, e) unless count without (pod) (f)', ['d', 'e', 'f']],
    ['label_values(entitlement_leader{job=~"$job"}, namespace)', ['entitlement_leader']],
    ['rate(x:recorded:rate5m[${__rate_interval}]) > bool 0 and Inf > NaN', ['x:recorded:rate5m']],
    ['sum by(outcome)(increase(records_total{outcome!~"ok|sent"}[1h:5m]))', ['records_total']],
  ])('%s', (expression, names) => {
    expect(metricNames(expression)).toEqual(names);
  });
});

it('exposedMetrics answers to the series of the families with a sample, histograms by their _bucket, _sum and _count', () => {
  const text = [
    '# HELP a_total A', '# TYPE a_total counter', 'a_total{x="1"} 3',
    '# HELP empty_total declared, never counted', '# TYPE empty_total counter',
    '# TYPE h_seconds histogram', 'h_seconds_bucket{le="0.1"} 1', 'h_seconds_bucket{le="+Inf"} 1', 'h_seconds_sum 0.05', 'h_seconds_count 1',
    '# TYPE g gauge', 'g 0', '',
  ].join('\n');
  expect([...exposedMetrics(text)].sort()).toEqual(['a_total', 'g', 'h_seconds', 'h_seconds_bucket', 'h_seconds_count', 'h_seconds_sum']);
});

it('asPrometheusQuery sets every variable to All and the rate interval', () => {
  expect(asPrometheusQuery('rate(a{job=~"$job", namespace=~"${namespace}"}[$__rate_interval])', '30s')).toBe('rate(a{job=~".*", namespace=~".*"}[30s])');
});

describe('GateWaits', () => {
  const pod = (uid: string, state: { gated?: boolean; verdict?: string; deleting?: boolean } = {}): CachedPod => ({
    metadata: {
      name: uid,
      namespace: 'shop',
      uid,
      labels: { [productLabel]: 'paid' },
      ...(state.verdict ? { annotations: { [annotations.status]: state.verdict } } : {}),
      ...(state.deleting ? { deletionTimestamp: new Date() } : {}),
    },
    spec: { containers: [], ...((state.gated ?? true) ? { schedulingGates: [{ name: schedulingGate }] } : {}) },
  });
  let now = 0;
  const ended: [string, number][] = [];
  const waits = new GateWaits((verdict, seconds) => ended.push([verdict, seconds]), () => now);
  const watch = waits.handler();
  const queue = { add: () => undefined, addAfter: () => undefined };

  it('counts a wait from the first event that shows the pod gated without a verdict to the first that shows its verdict', () => {
    watch.upsert?.(pod('a'), queue);
    now = 2_000;
    watch.upsert?.(pod('b'), queue);
    watch.upsert?.(pod('a'), queue); // a later event of a waiting pod: still waiting since 0
    now = 5_000;
    expect(waits.waiting()).toEqual({ pods: 2, longestSeconds: 5 });
    watch.upsert?.(pod('a', { verdict: 'Entitled', gated: false }), queue);
    expect(ended).toEqual([['Entitled', 5]]);
    expect(waits.waiting()).toEqual({ pods: 1, longestSeconds: 3 });
    // Refused and kept at the gate: the wait for a verdict is over.
    now = 6_500;
    watch.upsert?.(pod('b', { verdict: 'NotEntitled' }), queue);
    expect(ended).toEqual([['Entitled', 5], ['NotEntitled', 4.5]]);
    expect(waits.waiting()).toEqual({ pods: 0, longestSeconds: 0 });
  });

  it('times no verdict for a pod deleted, or let through by someone else, while it waited', () => {
    ended.length = 0;
    watch.upsert?.(pod('c'), queue);
    watch.upsert?.(pod('d'), queue);
    watch.upsert?.(pod('e'), queue);
    watch.upsert?.(pod('c', { deleting: true }), queue);
    watch.delete?.(pod('d'), queue);
    watch.upsert?.(pod('e', { gated: false }), queue);
    // Seen only with its verdict (the leader took over after it): no wait known.
    watch.upsert?.(pod('f', { verdict: 'Entitled', gated: false }), queue);
    expect(ended).toEqual([]);
    expect(waits.waiting()).toEqual({ pods: 0, longestSeconds: 0 });
  });

  it('is what the gauges show at scrape time', async () => {
    const metrics = new Metrics();
    metrics.watchGate(() => waits.waiting());
    watch.upsert?.(pod('g'), queue);
    now += 90_000;
    const text = await metrics.registry.metrics();
    expect(text).toContain('\nentitlement_gated_pods_waiting 1\n');
    expect(text).toContain('\nentitlement_gated_pod_longest_wait_seconds 90\n');
  });
});
