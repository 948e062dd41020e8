// Prometheus metrics of the operator, served on --metrics-port at /metrics.
import http from 'node:http';
import { listen } from '../net/servers.js';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Pods held at the gate without a verdict, and how long the longest of them has waited. */
export interface GateWaiting {
  pods: number;
  longestSeconds: number;
}

export class Metrics {
  readonly registry = new Registry();
  readonly reconciles = new Counter({ name: 'entitlement_reconciles_total', help: 'Reconciles by result (success, error, requeue)', labelNames: ['controller', 'result'], registers: [this.registry] });
  readonly reconcileDuration = new Histogram({ name: 'entitlement_reconcile_duration_seconds', help: 'Reconcile duration', labelNames: ['controller'], registers: [this.registry], buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] });
  readonly queueDepth = new Gauge({ name: 'entitlement_workqueue_depth', help: 'Keys waiting in the work queue', labelNames: ['controller'], registers: [this.registry] });
  readonly awsCalls = new Counter({ name: 'entitlement_aws_calls_total', help: 'AWS calls by operation and outcome (ok or the error code)', labelNames: ['operation', 'outcome'], registers: [this.registry] });
  readonly awsLatency = new Histogram({ name: 'entitlement_aws_call_duration_seconds', help: 'AWS call latency', labelNames: ['operation'], registers: [this.registry], buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30] });
  readonly webhookRequests = new Counter({ name: 'entitlement_webhook_requests_total', help: 'Admission requests by outcome (gated, allowed, bad_request, not_found)', labelNames: ['outcome'], registers: [this.registry] });
  readonly webhookLatency = new Histogram({ name: 'entitlement_webhook_duration_seconds', help: 'Admission request latency', labelNames: ['outcome'], registers: [this.registry], buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1] });
  readonly verdicts = new Counter({ name: 'entitlement_verdicts_total', help: 'Verdicts written to pods, by verdict and reason', labelNames: ['verdict', 'reason'], registers: [this.registry] });
  readonly gateBypasses = new Counter({
    name: 'entitlement_gate_bypasses_total',
    help: 'Labelled pods found with a verdict the operator did not seal (unverified_verdict), or running ungated without a verified Entitled verdict (ungated); each is checked with AWS',
    labelNames: ['kind'],
    registers: [this.registry],
  });
  readonly evictions = new Counter({
    name: 'entitlement_evictions_total',
    help: 'Evictions of pods that must not run, by outcome: evicted, refused (by a PodDisruptionBudget), deleted (never entitled, past the grace period of refusals)',
    labelNames: ['outcome'],
    registers: [this.registry],
  });
  readonly meteringRecords = new Counter({
    name: 'entitlement_metering_records_total',
    help: 'Hourly MeterUsage records by outcome: sent (accepted), duplicate (AWS already had it), conflict (AWS holds other parameters under its ClientToken, and bills those), failed (an attempt that will be retried), rejected (a pod\'s record refused for good, not billed), lost (outside the 6-hour window, never sent)',
    labelNames: ['outcome'],
    registers: [this.registry],
  });
  readonly meteringHoursLost = new Counter({ name: 'entitlement_metering_hours_lost_total', help: 'Hours of a product whose usage could not be reported within the 6-hour window', registers: [this.registry] });
  readonly leader = new Gauge({ name: 'entitlement_leader', help: '1 while this replica holds the leader Lease', registers: [this.registry] });
  readonly gateWait = new Histogram({
    name: 'entitlement_gate_wait_seconds',
    help: 'From the leader first seeing a gated pod without a verdict (its watch event, so time in the queue counts) to the event that shows its verdict, by verdict',
    labelNames: ['verdict'],
    registers: [this.registry],
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900],
  });
  readonly podsWaiting = this.readAtScrape('entitlement_gated_pods_waiting', 'Labelled pods held at the gate without a verdict yet, as the leader sees them (0 on other replicas)', () => this.gateWaits().pods);
  readonly longestWait = this.readAtScrape(
    'entitlement_gated_pod_longest_wait_seconds',
    'How long the longest-waiting of the pods held without a verdict has waited since the leader first saw it (0 when none waits)',
    () => this.gateWaits().longestSeconds,
  );
  readonly webhookCertificateExpiry = new Gauge({ name: 'entitlement_webhook_certificate_expiration_timestamp_seconds', help: 'When the serving certificate this replica\'s webhook serves expires (Unix seconds)', registers: [this.registry] });
  readonly meteringDeadline = new Gauge({
    name: 'entitlement_metering_report_deadline_timestamp_seconds',
    help: "When the oldest closed hour of a product that is not reported yet leaves AWS's 6-hour window and is lost (Unix seconds, the operator's clock); no series while every closed hour is reported",
    labelNames: ['product'],
    registers: [this.registry],
  });
  private gateWaits: () => GateWaiting = () => ({ pods: 0, longestSeconds: 0 });

  constructor(options: { processMetrics?: boolean } = {}) {
    if (options.processMetrics) collectDefaultMetrics({ register: this.registry });
  }

  /** A gauge whose value is read when Prometheus scrapes: an age kept in a gauge would be stale between events. */
  private readAtScrape(name: string, help: string, read: () => number): Gauge {
    return new Gauge({
      name,
      help,
      registers: [this.registry],
      collect() {
        this.set(read());
      },
    });
  }

  /** Where the gauges of pods waiting at the gate read from (the pods controller's GateWaits). */
  watchGate(waiting: () => GateWaiting): void {
    this.gateWaits = waiting;
  }

  /** Counts one answered admission request. */
  observeAdmission(outcome: string, seconds: number): void {
    this.webhookRequests.inc({ outcome });
    this.webhookLatency.observe({ outcome }, seconds);
  }

  async serve(port: number, host?: string): Promise<http.Server> {
    const server = http.createServer((req, res) => {
      if ((req.url ?? '').split('?')[0] !== '/metrics') {
        res.writeHead(404).end();
        return;
      }
      this.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': this.registry.contentType }).end(text),
        () => res.writeHead(500).end(),
      );
    });
    await listen(server, port, host);
    return server;
  }
}
