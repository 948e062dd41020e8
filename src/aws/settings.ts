// The one place AWS settings come from: flags, a YAML config file shaped like the `config` list
// of the R paws client, and the standard AWS environment. Flags beat the file, the file beats
// the environment. Anything malformed is an error naming the setting, raised at startup.
import { readFileSync } from 'node:fs';
import { load } from 'js-yaml';

export type CredentialSource =
  | { kind: 'default' }
  | { kind: 'profile'; profile: string }
  | { kind: 'static'; accessKeyId: string; secretAccessKey: string; sessionToken?: string }
  | { kind: 'secret'; namespace: string; name: string }
  | { kind: 'anonymous' };

export interface AwsSettings {
  /** Undefined: the SDK's own resolution (AWS_REGION, then the profile). */
  region?: string;
  meteringEndpoint?: string;
  stsEndpoint?: string;
  stsRegionalEndpoint: 'regional' | 'legacy';
  timeoutSeconds: number;
  closeConnection: boolean;
  credentials: CredentialSource;
}

/** The AWS-related flags, as parsed from the command line (undefined: not given). */
export interface AwsFlags {
  region?: string;
  meteringEndpoint?: string;
  stsEndpoint?: string;
  stsRegionalEndpoint?: 'regional' | 'legacy';
  timeout?: number;
  closeConnection?: boolean;
  awsProfile?: string;
  awsCredentialsSecret?: { namespace: string; name: string };
  anonymous?: boolean;
  config?: string;
}

export class SettingsError extends Error {
  override name = 'SettingsError';
}

const regionPattern = /^[a-z]{2}(-[a-z]+)+-\d+$/;

/** The paws config file, after validation. */
interface FileSettings {
  region?: string;
  endpoint?: string;
  stsRegionalEndpoint?: 'regional' | 'legacy';
  timeout?: number;
  closeConnection?: boolean;
  credentials?: CredentialSource;
}

export function resolveAwsSettings(flags: AwsFlags, env: NodeJS.ProcessEnv = process.env): AwsSettings {
  const file = flags.config ? readConfigFile(flags.config) : {};
  const envRegion = env.AWS_REGION ?? env.AWS_DEFAULT_REGION;
  const region = flags.region ?? file.region ?? (envRegion || undefined);
  if (region !== undefined) check(regionPattern.test(region), 'region', region, 'an AWS region such as us-east-1');
  const meteringEndpoint = flags.meteringEndpoint ?? file.endpoint ?? (env.AWS_ENDPOINT_URL_MARKETPLACE_METERING || env.AWS_ENDPOINT_URL || undefined);
  const stsEndpoint = flags.stsEndpoint ?? (env.AWS_ENDPOINT_URL_STS || env.AWS_ENDPOINT_URL || undefined);
  for (const [name, value] of [['metering endpoint', meteringEndpoint], ['sts endpoint', stsEndpoint]] as const) {
    if (value !== undefined) check(isHttpUrl(value), name, value, 'an http(s) URL');
  }
  const envSts = env.AWS_STS_REGIONAL_ENDPOINTS;
  if (envSts) check(envSts === 'regional' || envSts === 'legacy', 'AWS_STS_REGIONAL_ENDPOINTS', envSts, 'regional or legacy');
  return {
    ...(region !== undefined ? { region } : {}),
    ...(meteringEndpoint !== undefined ? { meteringEndpoint } : {}),
    ...(stsEndpoint !== undefined ? { stsEndpoint } : {}),
    stsRegionalEndpoint: flags.stsRegionalEndpoint ?? file.stsRegionalEndpoint ?? ((envSts as 'regional' | 'legacy' | undefined) || 'regional'),
    timeoutSeconds: flags.timeout ?? file.timeout ?? 60,
    closeConnection: flags.closeConnection ?? file.closeConnection ?? false,
    credentials: flagCredentials(flags) ?? file.credentials ?? (env.AWS_PROFILE ? { kind: 'profile', profile: env.AWS_PROFILE } : { kind: 'default' }),
  };
}

function flagCredentials(flags: AwsFlags): CredentialSource | undefined {
  const given: CredentialSource[] = [];
  if (flags.anonymous) given.push({ kind: 'anonymous' });
  if (flags.awsProfile) given.push({ kind: 'profile', profile: flags.awsProfile });
  if (flags.awsCredentialsSecret) given.push({ kind: 'secret', ...flags.awsCredentialsSecret });
  if (given.length > 1) throw new SettingsError('--anonymous, --aws-profile and --aws-credentials-secret exclude each other; give one');
  return given[0];
}

function readConfigFile(path: string): FileSettings {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new SettingsError(`config file ${path}: cannot be read: ${error instanceof Error ? error.message : String(error)}`);
  }
  let doc: unknown;
  try {
    doc = load(text);
  } catch (error) {
    throw new SettingsError(`config file ${path}: not valid YAML: ${error instanceof Error ? error.message : String(error)}`);
  }
  try {
    return parsePawsConfig(doc ?? {});
  } catch (error) {
    if (error instanceof SettingsError) throw new SettingsError(`config file ${path}: ${error.message}`);
    throw error;
  }
}

/** Validates a paws-shaped config object; errors name the setting by its path in the file. */
function parsePawsConfig(doc: unknown): FileSettings {
  const root = mapping(doc, '(top level)', ['credentials', 'endpoint', 'region', 'close_connection', 'timeout', 'sts_regional_endpoint']);
  const out: FileSettings = {};
  if (root.region !== undefined) {
    const region = str(root.region, 'region');
    check(regionPattern.test(region), 'region', region, 'an AWS region such as us-east-1');
    out.region = region;
  }
  if (root.endpoint !== undefined) {
    const endpoint = str(root.endpoint, 'endpoint');
    check(isHttpUrl(endpoint), 'endpoint', endpoint, 'an http(s) URL');
    out.endpoint = endpoint;
  }
  if (root.timeout !== undefined) {
    check(typeof root.timeout === 'number' && Number.isFinite(root.timeout) && root.timeout > 0, 'timeout', root.timeout, 'a positive number of seconds');
    out.timeout = root.timeout as number;
  }
  if (root.close_connection !== undefined) {
    check(typeof root.close_connection === 'boolean', 'close_connection', root.close_connection, 'true or false');
    out.closeConnection = root.close_connection as boolean;
  }
  if (root.sts_regional_endpoint !== undefined) {
    const mode = root.sts_regional_endpoint;
    check(mode === 'regional' || mode === 'legacy', 'sts_regional_endpoint', mode, 'regional or legacy');
    out.stsRegionalEndpoint = mode as 'regional' | 'legacy';
  }
  if (root.credentials !== undefined) {
    const credentials = parseCredentials(root.credentials);
    if (credentials) out.credentials = credentials;
  }
  return out;
}

function parseCredentials(value: unknown): CredentialSource | undefined {
  const section = mapping(value, 'credentials', ['creds', 'profile', 'anonymous']);
  const given: CredentialSource[] = [];
  if (section.anonymous !== undefined) {
    check(typeof section.anonymous === 'boolean', 'credentials.anonymous', section.anonymous, 'true or false');
    if (section.anonymous) given.push({ kind: 'anonymous' });
  }
  if (section.profile !== undefined && section.profile !== '') given.push({ kind: 'profile', profile: str(section.profile, 'credentials.profile') });
  if (section.creds !== undefined) {
    const creds = mapping(section.creds, 'credentials.creds', ['access_key_id', 'secret_access_key', 'session_token', 'expiration']);
    const accessKeyId = creds.access_key_id === undefined ? '' : str(creds.access_key_id, 'credentials.creds.access_key_id');
    const secretAccessKey = creds.secret_access_key === undefined ? '' : str(creds.secret_access_key, 'credentials.creds.secret_access_key');
    // paws treats empty keys as "not set": fall through to the profile or the chain.
    if (accessKeyId || secretAccessKey) {
      if (!accessKeyId) throw new SettingsError('credentials.creds.access_key_id: required with secret_access_key');
      if (!secretAccessKey) throw new SettingsError('credentials.creds.secret_access_key: required with access_key_id');
      const sessionToken = creds.session_token === undefined || creds.session_token === '' ? undefined : str(creds.session_token, 'credentials.creds.session_token');
      given.push({ kind: 'static', accessKeyId, secretAccessKey, ...(sessionToken ? { sessionToken } : {}) });
    }
  }
  if (given.length > 1) throw new SettingsError('credentials: set only one of creds, profile and anonymous');
  return given[0];
}

function mapping(value: unknown, where: string, allowed: readonly string[]): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new SettingsError(`${where}: must be a mapping`);
  const record = value as Record<string, unknown>;
  const unknown = Object.keys(record).filter((k) => !allowed.includes(k));
  if (unknown.length > 0) {
    const prefix = where === '(top level)' ? '' : `${where}.`;
    throw new SettingsError(`unknown setting ${unknown.map((k) => prefix + k).join(', ')} (known: ${allowed.map((k) => prefix + k).join(', ')})`);
  }
  return record;
}

function str(value: unknown, name: string): string {
  if (typeof value !== 'string') throw new SettingsError(`${name}: ${JSON.stringify(value)} is not a string`);
  return value;
}

function check(ok: boolean, name: string, value: unknown, expected: string): void {
  if (!ok) throw new SettingsError(`${name}: ${JSON.stringify(value)} is not ${expected}`);
}

function isHttpUrl(value: string): boolean {
  return URL.canParse(value) && ['http:', 'https:'].includes(new URL(value).protocol);
}
