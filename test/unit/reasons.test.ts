// One reason list: the plugin explains each reason (its table is typed by the list, so the
// compiler holds it), and the README's troubleshooting table has a row for each, no more.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { notEntitledReasons, permanentReasons } from '../../src/api/marketplace-product.js';
import { explain } from '../../src/cli/reasons.js';

const readme = readFileSync(path.join(import.meta.dirname, '../../README.md'), 'utf8');

it("the README's troubleshooting table has a row for each reason (and ProductNotFound), marking the permanent ones", () => {
  const start = readme.indexOf('## Troubleshooting by reason');
  const table = readme.slice(start, readme.indexOf('\n## ', start));
  const rows = [...table.matchAll(/^\| `([A-Za-z]+)`( \(permanent\))? \|/gm)].map((m) => [m[1], m[2] !== undefined]);
  expect(rows).toEqual([...notEntitledReasons.map((reason) => [reason, permanentReasons.has(reason)]), ['ProductNotFound', false]]);
});

it.each(notEntitledReasons)('the plugin says what %s means and what to do', (reason) => {
  const words = explain({ productName: 'app', productFound: true, verdict: 'NotEntitled', reason, gated: true, enforcement: 'Enforce' });
  expect(words.summary).toContain(`not entitled (${reason})`);
  expect(words.summary).not.toContain('the check failed');
  expect(words.action).toBeTruthy();
});
