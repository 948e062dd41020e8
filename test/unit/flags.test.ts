import { FlagError, parseFlags } from '../../src/config/flags.js';

describe('parseFlags', () => {
  it('has the contract defaults', () => {
    expect(parseFlags([])).toEqual({ admission: 'webhook', webhookPort: 9443, metricsPort: 8080, healthPort: 8081, leaderElect: true, exemptNamespaces: [], help: false });
  });

  it('takes --name=value and --name value, and booleans with or without a value', () => {
    const flags = parseFlags([
      '--kubeconfig', '/tmp/kc', '--webhook-port=9444', '--webhook-url', 'https://127.0.0.1:9444', '--leader-elect=false',
      '--region=eu-west-1', '--metering-endpoint=http://127.0.0.1:4566', '--sts-endpoint', 'http://127.0.0.1:4566',
      '--sts-regional-endpoint=legacy', '--timeout=2.5', '--close-connection', '--aws-profile=prod',
      '--aws-credentials-secret=ops/aws-keys', '--anonymous=true', '--config=/etc/aws.yaml', '--admission=webhook',
      '--exempt-namespaces=monitoring,istio-system',
    ]);
    expect(flags).toEqual({
      admission: 'webhook', kubeconfig: '/tmp/kc', webhookPort: 9444, webhookUrl: 'https://127.0.0.1:9444', metricsPort: 8080, healthPort: 8081, leaderElect: false,
      region: 'eu-west-1', meteringEndpoint: 'http://127.0.0.1:4566', stsEndpoint: 'http://127.0.0.1:4566', stsRegionalEndpoint: 'legacy',
      timeout: 2.5, closeConnection: true, awsProfile: 'prod', awsCredentialsSecret: { namespace: 'ops', name: 'aws-keys' }, anonymous: true,
      config: '/etc/aws.yaml', exemptNamespaces: ['monitoring', 'istio-system'], help: false,
    });
  });

  it.each([
    [['--bogus'], 'unknown flag --bogus'],
    [['positional'], 'unexpected argument "positional"'],
    [['--webhook-port=0'], 'flag --webhook-port: "0" is not a port number'],
    [['--metrics-port', 'http'], 'flag --metrics-port: "http" is not a port number'],
    [['--timeout=-1'], 'flag --timeout: "-1" is not a positive number'],
    [['--timeout=0'], 'flag --timeout: "0" is not a positive number'],
    [['--leader-elect=maybe'], 'flag --leader-elect: "maybe" is not true or false'],
    [['--admission=mutating'], 'flag --admission: "mutating" is not webhook or policy'],
    [['--admission=policy', '--webhook-url=https://127.0.0.1:9443'], 'flag --webhook-url: the policy admission mode (--admission=policy) serves no webhook'],
    [['--webhook-url=ftp://x'], 'flag --webhook-url: "ftp://x" is not an http(s) URL'],
    [['--metering-endpoint=not a url'], 'flag --metering-endpoint: "not a url" is not an http(s) URL'],
    [['--aws-credentials-secret=just-a-name'], 'flag --aws-credentials-secret: "just-a-name" is not NAMESPACE/NAME'],
    [['--sts-regional-endpoint=global'], 'flag --sts-regional-endpoint: "global" is not regional or legacy'],
    [['--region'], 'flag --region needs a value'],
    [['--region='], 'flag --region: "" is not a non-empty string'],
    [['--exempt-namespaces=ok,Not_A_Namespace'], 'flag --exempt-namespaces: "ok,Not_A_Namespace" is not a comma-separated list of namespace names'],
  ])('rejects %j: %s', (argv, message) => {
    expect(() => parseFlags(argv)).toThrow(FlagError);
    expect(() => parseFlags(argv)).toThrow(message);
  });
});
