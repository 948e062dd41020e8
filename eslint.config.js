// @ts-check
import eslint from '@eslint/js';
import tseslint from 'typescript-eslint';
import globals from 'globals';

// Folders import downwards (README, Layout): api/ nothing of src/; runtime/ and kube/ nothing of
// the domain; a controller never a sibling controller; only cmd/ the composition root (app.ts).
const domain = ['**/api/*', '**/aws/*', '**/controllers/**', '**/verdicts/*', '**/webhook/*'];
const root = ['**/app.js', '**/cmd/*'];
const layout = (files, forbidden, why) => ({
  files,
  rules: { 'no-restricted-imports': ['error', { patterns: [{ group: forbidden, message: `${why} (README, Layout)` }] }] },
});

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'coverage/'] },
  eslint.configs.recommended,
  ...tseslint.configs.strictTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: { allowDefaultProject: ['*.js'] }, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true }],
      '@typescript-eslint/no-explicit-any': 'error',
      // @kubernetes/client-node declares its models as classes but is used with plain objects
      // throughout (its own docs do so); the objects are never instanceof-checked.
      '@typescript-eslint/no-unsafe-class-instance-assignment': 'off',
      '@typescript-eslint/no-misused-spread': ['error', { allow: [{ from: 'package', package: '@kubernetes/client-node', name: ['V1Secret', 'V1Lease', 'V1LeaseSpec', 'V1Pod', 'AdmissionregistrationV1WebhookClientConfig'] }] }],
    },
  },
  layout(['src/api/**'], ['../**'], 'api/ imports nothing else of src/'),
  layout(['src/runtime/**', 'src/kube/**'], [...domain, ...root], 'runtime/ and kube/ know nothing of products, AWS, controllers or webhooks'),
  layout(['src/aws/**'], ['**/controllers/**', '**/verdicts/*', '**/webhook/*', ...root], 'aws/ knows nothing of controllers or webhooks'),
  layout(['src/verdicts/**'], ['**/controllers/**', '**/webhook/*', ...root], 'verdicts/ knows nothing of controllers or webhooks'),
  layout(['src/webhook/**'], ['**/controllers/**', '**/verdicts/*', ...root], 'the webhook knows nothing of controllers'),
  layout(['src/controllers/*.ts'], ['./pods/*', './products/*', './metering/*', ...root], 'what controllers share knows no controller'),
  // By any path (`../metering/x`, `../../controllers/metering/x`, from a subfolder): a segment names the sibling.
  layout(['src/controllers/pods/**'], ['**/products/**', '**/metering/**', '**/webhook/*', ...root], 'a controller never imports a sibling controller'),
  layout(['src/controllers/products/**'], ['**/pods/**', '**/metering/**', '**/webhook/*', ...root], 'a controller never imports a sibling controller'),
  layout(['src/controllers/metering/**'], ['**/pods/**', '**/products/**', '**/webhook/*', ...root], 'a controller never imports a sibling controller'),
  layout(['src/observability/**', 'src/net/**', 'src/pki/**'], [...domain, '**/runtime/*', '**/kube/*', ...root], 'observability/, net/ and pki/ are leaves: runtime/ and kube/ import them'),
  layout(['src/config/**', 'src/clock.ts', 'src/app.ts', 'src/cli/**'], root, 'only cmd/ imports the composition root'),
  // Tests build API objects from parts (metadata, spec), all plain data.
  { files: ['test/**'], rules: { '@typescript-eslint/no-misused-spread': 'off' } },
  { files: ['**/*.js', '**/*.mjs'], ...tseslint.configs.disableTypeChecked },
  { files: ['**/*.js', '**/*.mjs'], languageOptions: { globals: globals.node } },
);
