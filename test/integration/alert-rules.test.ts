// The alert rules as Prometheus's own tool reads them: promtool check rules (syntax, templates,
// lint) and promtool test rules (config/prometheus/alerts_test.yaml: each alert fires after its
// `for:`, and stays quiet where it must), with promtool built from the Prometheus Go module.
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { load } from 'js-yaml';
import { alertRules, alertsFile, alertTestsFile } from '../support/monitoring.js';
import { binary } from '../support/testbin.js';

const run = promisify(execFile);

interface AlertTests {
  tests: { alert_rule_test: { alertname: string; exp_alerts: { exp_labels: Record<string, string> }[] }[] }[];
}

async function promtool(...args: string[]): Promise<{ code: number; output: string }> {
  try {
    const { stdout, stderr } = await run(await binary('promtool'), args);
    return { code: 0, output: stdout + stderr };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string };
    return { code: failed.code ?? -1, output: `${failed.stdout ?? ''}${failed.stderr ?? ''}` };
  }
}

it('promtool check rules accepts the alert rules, lint included', async () => {
  const result = await promtool('check', 'rules', '--lint=all', '--lint-fatal', alertsFile);
  expect(result).toEqual({ code: 0, output: expect.stringContaining(`SUCCESS: ${(await alertRules()).length} rules found`) as string });
}, 600_000);

it('promtool test rules passes the unit tests of every alert', async () => {
  const result = await promtool('test', 'rules', alertTestsFile);
  expect(result).toEqual({ code: 0, output: expect.stringContaining('SUCCESS') as string });
  // Each alert and severity has a test in which it fires, and each alert one in which it does not (yet).
  const tests = (load(await readFile(alertTestsFile, 'utf8')) as AlertTests).tests.flatMap((test) => test.alert_rule_test);
  const fired = new Set(tests.flatMap((test) => test.exp_alerts.map((alert) => `${test.alertname} ${alert.exp_labels.severity ?? ''}`)));
  const quiet = new Set(tests.filter((test) => test.exp_alerts.length === 0).map((test) => test.alertname));
  for (const rule of await alertRules()) {
    expect([rule.alert, fired.has(`${rule.alert ?? ''} ${rule.labels?.severity ?? ''}`), quiet.has(rule.alert ?? '')]).toEqual([rule.alert, true, true]);
  }
}, 600_000);

it('every alert is named EntitlementOperator…, says how severe it is, and links a runbook', async () => {
  for (const rule of await alertRules()) {
    expect(rule.alert).toMatch(/^EntitlementOperator[A-Z][A-Za-z]+$/);
    expect(['warning', 'critical']).toContain(rule.labels?.severity);
    expect(Object.keys(rule.annotations ?? {}).sort()).toEqual(['description', 'runbook_url', 'summary']);
    expect(rule.annotations?.runbook_url).toBe(`README.md#${(rule.alert ?? '').toLowerCase()}`);
  }
});
