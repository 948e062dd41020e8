import { PassThrough } from 'node:stream';
import { createLogger } from '../../src/observability/logger.js';

function capture(): { log: ReturnType<typeof createLogger>; lines: () => Record<string, unknown>[] } {
  const stream = new PassThrough();
  let out = '';
  stream.on('data', (chunk: Buffer) => (out += chunk.toString()));
  return { log: createLogger({ stream, level: 'debug' }), lines: () => out.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>) };
}

describe('logger', () => {
  it('writes one JSON object per line with level, message, timestamp and fields', async () => {
    const { log, lines } = capture();
    log.info('pod gated', { pod: 'ns/p', product: 'ns/prod' });
    await new Promise((resolve) => setImmediate(resolve));
    expect(lines()).toEqual([{ level: 'info', message: 'pod gated', pod: 'ns/p', product: 'ns/prod', timestamp: expect.stringMatching(/^\d{4}-\d\d-\d\dT/) as unknown }]);
  });

  it('masks fields that hold credentials or tokens', async () => {
    const { log, lines } = capture();
    log.warn('aws call', { secretAccessKey: 'wJalr', sessionToken: 'FQoG', token: 'eyJ', signature: 'eyJhbGciOiJQUzI1NiJ9.x.y', Authorization: 'AWS4', privateKey: 'k', region: 'us-east-1' });
    await new Promise((resolve) => setImmediate(resolve));
    const [line] = lines();
    expect(line).toMatchObject({ secretAccessKey: '[REDACTED]', sessionToken: '[REDACTED]', token: '[REDACTED]', signature: '[REDACTED]', Authorization: '[REDACTED]', privateKey: '[REDACTED]', region: 'us-east-1' });
    expect(JSON.stringify(line)).not.toMatch(/wJalr|FQoG|eyJ|AWS4/);
  });
});
