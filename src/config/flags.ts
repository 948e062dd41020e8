// Command-line flags of the operator process and the CLI, as the contract lists them. Parsing
// is strict: an unknown flag or a bad value is an error naming the flag, reported at startup.
import type { AwsFlags } from '../aws/settings.js';

/**
 * Who adds the gate at pod CREATE: the operator's mutating webhook, or the bundle's
 * MutatingAdmissionPolicy inside the API server (Kubernetes 1.36+), with no webhook to serve.
 */
export type AdmissionMode = 'webhook' | 'policy';

export interface OperatorFlags extends AwsFlags {
  kubeconfig?: string;
  admission: AdmissionMode;
  webhookPort: number;
  webhookUrl?: string;
  metricsPort: number;
  healthPort: number;
  leaderElect: boolean;
  /** Namespaces whose pods are never gated, beyond kube-system and the operator's own. */
  exemptNamespaces: string[];
  help: boolean;
  /** Only when given: print the version and exit. */
  version?: boolean;
}

type Kind = 'string' | 'port' | 'positive' | 'integer' | 'boolean' | 'url' | 'secretRef' | 'stsMode' | 'admissionMode' | 'namespaces';

export interface FlagSpec {
  key: string;
  kind: Kind;
  help: string;
}

export type FlagSpecs = Readonly<Record<string, FlagSpec>>;

// AWS settings have no default here: unset means "take it from the config file or the
// environment" (flags beat the file, which beats the environment). Shared by operator and CLI.
export const awsFlagSpecs: FlagSpecs = {
  region: { key: 'region', kind: 'string', help: 'AWS region (default AWS_REGION)' },
  'metering-endpoint': { key: 'meteringEndpoint', kind: 'url', help: 'Marketplace Metering endpoint (default AWS_ENDPOINT_URL_MARKETPLACE_METERING)' },
  'sts-endpoint': { key: 'stsEndpoint', kind: 'url', help: 'STS endpoint (default AWS_ENDPOINT_URL_STS)' },
  'sts-regional-endpoint': { key: 'stsRegionalEndpoint', kind: 'stsMode', help: 'regional or legacy (default regional)' },
  timeout: { key: 'timeout', kind: 'positive', help: 'per-request AWS timeout in seconds (default 60)' },
  'close-connection': { key: 'closeConnection', kind: 'boolean', help: 'no HTTP keep-alive to AWS' },
  'aws-profile': { key: 'awsProfile', kind: 'string', help: 'shared-config profile (default AWS_PROFILE)' },
  'aws-credentials-secret': { key: 'awsCredentialsSecret', kind: 'secretRef', help: 'NS/NAME of a Secret with access_key_id, secret_access_key[, session_token]' },
  anonymous: { key: 'anonymous', kind: 'boolean', help: 'unsigned AWS requests (local fakes only)' },
  config: { key: 'config', kind: 'string', help: 'YAML file with the AWS settings, shaped like the R paws client config' },
};

export const helpFlagSpec: FlagSpecs = { help: { key: 'help', kind: 'boolean', help: 'print this help' } };

const operatorFlagSpecs: FlagSpecs = {
  kubeconfig: { key: 'kubeconfig', kind: 'string', help: 'kubeconfig for out-of-cluster access (default: in-cluster config, then KUBECONFIG)' },
  admission: { key: 'admission', kind: 'admissionMode', help: "webhook, or policy: the bundle's MutatingAdmissionPolicy gates pods and no webhook is served (Kubernetes 1.36+; default webhook)" },
  'webhook-port': { key: 'webhookPort', kind: 'port', help: 'HTTPS port of the admission webhook (default 9443)' },
  'webhook-url': { key: 'webhookUrl', kind: 'url', help: 'out of cluster: register the webhook with this URL instead of a Service' },
  'metrics-port': { key: 'metricsPort', kind: 'port', help: 'port of Prometheus /metrics (default 8080)' },
  'health-port': { key: 'healthPort', kind: 'port', help: 'port of /healthz and /readyz (default 8081)' },
  'leader-elect': { key: 'leaderElect', kind: 'boolean', help: 'Lease-based leader election for the reconciler (default true)' },
  'exempt-namespaces': { key: 'exemptNamespaces', kind: 'namespaces', help: "comma-separated namespaces whose pods are never gated, beyond kube-system and the operator's own (the bundle's admission selectors must list the same)" },
  ...awsFlagSpecs,
  ...helpFlagSpec,
  version: { key: 'version', kind: 'boolean', help: 'print the version and exit' },
};

export class FlagError extends Error {}

export function parseFlags(argv: readonly string[]): OperatorFlags {
  const defaults: OperatorFlags = { admission: 'webhook', webhookPort: 9443, metricsPort: 8080, healthPort: 8081, leaderElect: true, exemptNamespaces: [], help: false };
  const flags = parseFlagsWith(argv, operatorFlagSpecs, defaults);
  // A webhook URL given to an operator that serves no webhook is a mistake worth saying so.
  if (flags.admission === 'policy' && flags.webhookUrl !== undefined) throw new FlagError('flag --webhook-url: the policy admission mode (--admission=policy) serves no webhook');
  return flags;
}

/** Parses argv against `specs`, starting from `initial` (the defaults). */
export function parseFlagsWith<T extends object>(argv: readonly string[], specs: FlagSpecs, initial: T): T {
  const flags = { ...initial };
  const values = flags as Record<string, unknown>;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    const match = /^--([a-z-]+)(?:=(.*))?$/s.exec(arg);
    if (!match) throw new FlagError(`unexpected argument ${JSON.stringify(arg)}; flags look like --name=value`);
    const [, name = '', inline] = match;
    const spec = specs[name];
    if (!spec) throw new FlagError(`unknown flag --${name}`);
    let raw = inline;
    if (raw === undefined && spec.kind !== 'boolean') {
      raw = argv[++i];
      if (raw === undefined) throw new FlagError(`flag --${name} needs a value`);
    }
    values[spec.key] = convert(name, spec.kind, raw);
  }
  return flags;
}

function convert(name: string, kind: Kind, raw: string | undefined): unknown {
  const fail = (expected: string): never => {
    throw new FlagError(`flag --${name}: ${JSON.stringify(raw)} is not ${expected}`);
  };
  switch (kind) {
    case 'boolean':
      if (raw === undefined || raw === 'true') return true;
      if (raw === 'false') return false;
      return fail('true or false');
    case 'port': {
      const port = Number(raw);
      return Number.isInteger(port) && port > 0 && port < 65536 ? port : fail('a port number (1-65535)');
    }
    case 'integer': {
      const value = Number(raw);
      return raw !== '' && Number.isInteger(value) && value >= 0 ? value : fail('a whole number');
    }
    case 'positive': {
      const value = Number(raw);
      return Number.isFinite(value) && value > 0 ? value : fail('a positive number');
    }
    case 'url':
      return URL.canParse(raw ?? '') && /^https?:$/.test(new URL(raw ?? '').protocol) ? raw : fail('an http(s) URL');
    case 'secretRef': {
      const [namespace, secretName, ...rest] = (raw ?? '').split('/');
      return namespace && secretName && rest.length === 0 ? { namespace, name: secretName } : fail('NAMESPACE/NAME');
    }
    case 'stsMode':
      return raw === 'regional' || raw === 'legacy' ? raw : fail('regional or legacy');
    case 'admissionMode':
      return raw === 'webhook' || raw === 'policy' ? raw : fail('webhook or policy');
    case 'namespaces': {
      const names = (raw ?? '').split(',').filter((name) => name !== '');
      return names.every((name) => /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(name)) ? names : fail('a comma-separated list of namespace names');
    }
    case 'string':
      return raw ? raw : fail('a non-empty string');
  }
}

export function usage(program: string, specs: FlagSpecs = operatorFlagSpecs): string {
  return `Usage: ${program} [flags]\n\nFlags:\n${flagHelp(specs)}`;
}

export function flagHelp(specs: FlagSpecs): string {
  return Object.entries(specs).map(([name, spec]) => `  --${name.padEnd(24)} ${spec.help}\n`).join('');
}
