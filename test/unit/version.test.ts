import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseFlags } from '../../src/config/flags.js';
import { packageVersion } from '../../src/version.js';
import { repoRoot } from '../support/testbin.js';

describe('--version', () => {
  it('is a flag of the operator', () => {
    expect(parseFlags(['--version']).version).toBe(true);
  });

  it("reads the nearest entitlement-operator package.json, skipping other packages' (the bundle's layout)", () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'version-'));
    try {
      writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'entitlement-operator', version: '9.8.7' }));
      mkdirSync(path.join(dir, 'node_modules/other'), { recursive: true });
      writeFileSync(path.join(dir, 'node_modules/other/package.json'), JSON.stringify({ name: 'other', version: '1.0.0' }));
      expect(packageVersion(pathToFileURL(path.join(dir, 'node_modules/other/main.js')).href)).toBe('9.8.7');
      expect(packageVersion(pathToFileURL(path.join(dir, 'main.js')).href)).toBe('9.8.7');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("is the checkout's package.json version", () => {
    const { version } = JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { version: string };
    expect(packageVersion()).toBe(version);
  });
});
