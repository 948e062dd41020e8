// The layout holds: the folder import rules of eslint.config.js refuse what the README's Layout
// forbids, and the composition root stays a table of contents (each controller wires itself).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ESLint, type Linter } from 'eslint';
import tseslint from 'typescript-eslint';

const root = path.join(import.meta.dirname, '../..');

/** The layout rules alone (the type-checked rules need files in the project). */
async function layoutLinter(): Promise<ESLint> {
  const config = ((await import(path.join(root, 'eslint.config.js'))) as { default: Linter.Config[] }).default;
  const layout = config.filter((entry) => entry.rules?.['no-restricted-imports'] !== undefined);
  return new ESLint({ cwd: root, overrideConfigFile: true, overrideConfig: [{ files: ['**/*.ts'], languageOptions: { parser: tseslint.parser } }, ...layout] });
}

async function refusals(file: string, source: string): Promise<string[]> {
  const [result] = await (await layoutLinter()).lintText(source, { filePath: path.join(root, file) });
  return (result?.messages ?? []).map((m) => m.message);
}

it.each([
  ['src/controllers/products/x.ts', "import { meters } from '../metering/reconciler.js';", /a controller never imports a sibling controller/],
  ['src/controllers/pods/x.ts', "import { meters } from '../../controllers/metering/ledger.js';", /a controller never imports a sibling controller/],
  ['src/controllers/pods/sub/x.ts', "import { meters } from '../../metering/ledger.js';", /a controller never imports a sibling controller/],
  ['src/controllers/pods/x.ts', "import { setupWebhook } from '../../webhook/setup.js';", /a controller never imports a sibling controller/],
  ['src/runtime/x.ts', "import { productLabel } from '../api/marketplace-product.js';", /runtime\/ and kube\/ know nothing of products/],
  ['src/kube/x.ts', "import { Registrar } from '../controllers/pods/registration.js';", /runtime\/ and kube\/ know nothing/],
  ['src/api/x.ts', "import { keyOf } from '../runtime/informer.js';", /api\/ imports nothing else of src/],
  ['src/controllers/context.ts', "import { setupPods } from './pods/setup.js';", /what controllers share knows no controller/],
  ['src/observability/x.ts', "import type { Manager } from '../runtime/manager.js';", /are leaves/],
  ['src/cli/x.ts', "import { startOperator } from '../app.js';", /only cmd\/ imports the composition root/],
])('%s may not: %s', async (file, source, why) => {
  const messages = await refusals(file, source);
  expect(messages).toHaveLength(1);
  expect(messages[0]).toMatch(why);
});

it.each([
  ['src/controllers/pods/x.ts', "import { keyOf } from '../../runtime/informer.js';\nimport type { ControllerContext } from '../context.js';"],
  ['src/runtime/x.ts', "import { isNotFound } from '../kube/errors.js';"],
  ['src/cmd/x.ts', "import { startOperator } from '../app.js';"],
])('%s may import downwards', async (file, source) => {
  expect(await refusals(file, source)).toEqual([]);
});

it('startOperator is a table of contents: about 30 lines of setup calls, no watch wired in it', () => {
  const app = readFileSync(path.join(root, 'src/app.ts'), 'utf8');
  const start = app.indexOf('export async function startOperator');
  const body = app.slice(start, app.indexOf('\n}\n', start));
  expect(body.split('\n').length).toBeLessThanOrEqual(40);
  expect(body).toMatch(/setupPods\(manager, context\);\n\s*setupProducts\(manager, context\);\n\s*setupMetering\(manager, context\);/);
  expect(app).not.toMatch(/onUpsert|onDelete|\.watches\(|new WorkQueue|new Informer/);
});
