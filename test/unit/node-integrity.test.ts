// The image's Node binaries are pinned by checksum (hack/node-integrity.json, checked by the
// Dockerfile); the pin must be for the Node the tests run on, or the next image build fails.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { repoRoot } from '../support/testbin.js';

const read = (file: string): Record<string, unknown> => JSON.parse(readFileSync(path.join(repoRoot, file), 'utf8')) as Record<string, unknown>;

it("pins the Node binaries of package.json's node devDependency, for both platforms", () => {
  const pin = read('hack/node-integrity.json');
  const devDependencies = read('package.json').devDependencies as Record<string, string>;
  expect(pin.version).toBe(devDependencies.node);
  for (const arch of ['x64', 'arm64']) expect(pin[arch]).toMatch(/^sha512-[A-Za-z0-9+/]{86}==$/);
});
