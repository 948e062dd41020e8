// Structured JSON logs (winston). Fields whose names say they hold a secret are masked, so a
// credential or token can never reach a log line by accident.
import winston from 'winston';

const secretField = /secret|token|password|credential|authorization|signature|session|private.?key/i;

const redact = winston.format((info) => {
  for (const key of Object.keys(info)) {
    if (secretField.test(key)) info[key] = '[REDACTED]';
  }
  return info;
});

export type Logger = winston.Logger;

export function createLogger(options: { level?: string; stream?: NodeJS.WritableStream } = {}): Logger {
  return winston.createLogger({
    level: options.level ?? process.env.LOG_LEVEL ?? 'info',
    format: winston.format.combine(redact(), winston.format.timestamp(), winston.format.errors({ stack: true }), winston.format.json()),
    transports: [options.stream ? new winston.transports.Stream({ stream: options.stream }) : new winston.transports.Console({ stderrLevels: [] })],
  });
}
