// Bundles the compiled operator (dist/, from `npm run build`) for the image, so it needs no
// node_modules tree: main.js and admission-worker.js, and beside them (where the admission
// thread looks for its worker, relative to the chunk that starts it) the chunks they share or
// import on demand. Split rather than one file per entry, because it measured better (README,
// "Image size and platforms"): main.js is a few lines, so its signal handlers are in place before
// the rest loads, and what is imported on demand (main.ts's import of the operator, the
// Kubernetes client's) is compiled when imported; one 8.5 MB file took as long to start as
// dist/ and 20 MiB more RSS.
// Each bundled package's package.json and licence files are kept in OUTDIR/node_modules/ at their
// place in package-lock.json: image scanners find the packages there, the licences travel with
// the code, and hack/check-image.sh can tell a dev-only package in the bundle.
// The Dockerfile runs it too (.dockerignore lets this one file of hack/ into the build context).
// Usage: node hack/bundle.mjs [OUTDIR]   (run from the repository's root; default dist/bundle;
// npm run build empties dist/ first)
import { build } from 'esbuild';
import { cpSync, existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';

const outDir = process.argv[2] ?? 'dist/bundle';
rmSync(outDir, { recursive: true, force: true });

// node_modules/a/node_modules/@s/b/lib/x.js -> node_modules/a/node_modules/@s/b
const packageDir = (file) => {
  const parts = file.split('/');
  const last = parts.lastIndexOf('node_modules');
  if (last < 0) return undefined;
  return parts.slice(0, last + (parts[last + 1]?.startsWith('@') ? 3 : 2)).join('/');
};

// The build has the devDependencies installed, production does not: a package only they need
// (the lock marks it dev) stays out, as it would be missing from `npm ci --omit=dev`. Only
// optional requires reach one (debug's try { require('supports-color') }), which then fall back.
const lock = JSON.parse(readFileSync('package-lock.json', 'utf8')).packages ?? {};
const left = new Set();
const productionOnly = {
  name: 'production-only',
  setup(build) {
    build.onResolve({ filter: /^[^./]/ }, async (args) => {
      if (args.pluginData?.inner) return undefined;
      const found = await build.resolve(args.path, { kind: args.kind, importer: args.importer, resolveDir: args.resolveDir, pluginData: { inner: true } });
      const dir = found.external || !found.path ? undefined : packageDir(path.relative(process.cwd(), found.path));
      // Unresolved: esbuild's own resolution again, which lets a require in a try block be.
      if (found.errors.length) return undefined;
      if (dir === undefined || !lock[dir]?.dev) return found;
      left.add(dir);
      return { path: args.path, external: true };
    });
  },
};
const { metafile } = await build({
  entryPoints: { main: 'dist/main.js', 'admission-worker': 'dist/webhook/admission-worker.js' },
  outdir: outDir,
  bundle: true,
  platform: 'node',
  target: 'node24',
  format: 'esm',
  splitting: true,
  // In OUTDIR itself: the admission thread resolves ./admission-worker.js from its chunk.
  chunkNames: '[name]-[hash]',
  // Whitespace and syntax only: names stay, so stack traces and error names read as in dist/.
  minifyWhitespace: true,
  minifySyntax: true,
  // The licences are shipped as files (below), not as comments scattered through the bundle.
  legalComments: 'none',
  // CommonJS packages (winston, prom-client, ...) call require(); an ES module has none.
  banner: { js: "import { createRequire as __bundleRequire } from 'node:module'; const require = __bundleRequire(import.meta.url);" },
  metafile: true,
  plugins: [productionOnly],
  logLevel: 'warning',
});
const packages = new Set(Object.keys(metafile.inputs).map(packageDir).filter((dir) => dir !== undefined));
for (const dir of [...packages].sort()) {
  const kept = readdirSync(dir).filter((name) => name === 'package.json' || /^(licen[cs]e|copying|notice)/i.test(name));
  for (const name of kept) cpSync(path.join(dir, name), path.join(outDir, dir, name));
}
// The operator's own, for --version (src/version.ts) and for hack/check-image.sh.
cpSync('package.json', path.join(outDir, 'package.json'));
if (!existsSync(path.join(outDir, 'main.js'))) throw new Error(`bundle: no ${outDir}/main.js`);
process.stderr.write(`bundle: ${outDir}/main.js, ${outDir}/admission-worker.js; ${packages.size} packages; left out (dev-only): ${[...left].sort().join(', ') || 'none'}\n`);
