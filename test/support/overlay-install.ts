// Installs the operator the way the README's Install section tells users to: copy the example
// overlay and the bundle of the admission mode (as install.yaml) into a directory, point the overlay at the copied bundle, edit the lines
// marked EDIT (image, region, and here also static credentials and the endpoints of the fake
// AWS), and apply it with one `kubectl apply -k`. Every edit must find its line, so the README's
// example cannot drift from what this test runs.
import { cp, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { ControlPlane } from './control-plane.js';
import { bundlePathOf, type AdmissionMode } from './bundle.js';
import { repoRoot } from './testbin.js';

export interface OverlaySettings {
  /** Which bundle the overlay installs: config/install.yaml (webhook) or config/install-policy-mode.yaml. */
  bundle: AdmissionMode;
  /** Image name and tag, e.g. localhost/entitlement-operator and e2e. */
  image: { name: string; tag: string };
  region: string;
  /** Metering and STS endpoint (the fake AWS). */
  endpoint: string;
  /** The Secret the operator reads its static keys from, in the operator's namespace. */
  credentialsSecret: string;
}

export async function installWithOverlay(plane: ControlPlane, dir: string, settings: OverlaySettings): Promise<void> {
  const overlay = path.join(dir, 'my-install');
  await cp(path.join(repoRoot, 'config/overlays/example'), overlay, { recursive: true });
  await cp(bundlePathOf(settings.bundle), path.join(overlay, 'install.yaml'));
  const file = path.join(overlay, 'kustomization.yaml');
  let text = await readFile(file, 'utf8');
  const edit = (from: RegExp, to: string): void => {
    if (!from.test(text)) throw new Error(`the example overlay has no line matching ${String(from)}; README and overlay disagree`);
    text = text.replace(from, to);
  };
  edit(/\.\.\/\.\.\/install\.yaml/g, 'install.yaml'); // the README's sed
  edit(/newName: \S+ # EDIT.*/, `newName: ${settings.image.name}`);
  edit(/newTag: \S+ # EDIT.*/, `newTag: ${settings.image.tag}`);
  edit(/value: us-east-1 # EDIT.*/, `value: ${settings.region}`);
  edit(/# - aws-credentials-access\.yaml.*/, '- aws-credentials-access.yaml');
  // Uncomments one commented-out `- op: add` of an args entry, giving the flag its value.
  const addArg = (flag: string, value: string): void => {
    edit(new RegExp(`# - op: add\\n(\\s+)# {3}path: (\\S+)\\n(\\s+)# {3}value: --${flag}=\\S+( # EDIT)?`), `- op: add\n$1  path: $2\n$3  value: --${flag}=${value}`);
  };
  addArg('aws-credentials-secret', `entitlement-operator-system/${settings.credentialsSecret}`);
  addArg('metering-endpoint', settings.endpoint);
  addArg('sts-endpoint', settings.endpoint);
  await writeFile(file, text);
  const accessFile = path.join(overlay, 'aws-credentials-access.yaml');
  const access = await readFile(accessFile, 'utf8');
  await writeFile(accessFile, access.replace(/resourceNames: \[aws-keys\]/, `resourceNames: [${settings.credentialsSecret}]`));
  await plane.kubectlOk(['apply', '-k', overlay]);
}
