// The operator's version (--version), read where it is recorded once: the package's package.json.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The operator's version, from the nearest package.json of this package above this module: the
 * checkout's from dist/, the image's /app/package.json from the bundle's /app/main.js.
 */
export function packageVersion(from: string = import.meta.url): string {
  for (let dir = path.dirname(fileURLToPath(from)); ; dir = path.dirname(dir)) {
    let text: string | undefined;
    try {
      text = readFileSync(path.join(dir, 'package.json'), 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
    const pkg = text === undefined ? {} : (JSON.parse(text) as { name?: unknown; version?: unknown });
    if (pkg.name === 'entitlement-operator' && typeof pkg.version === 'string') return pkg.version;
    if (path.dirname(dir) === dir) throw new Error(`no package.json of entitlement-operator above ${fileURLToPath(from)}`);
  }
}
