import { pino, type Logger } from 'pino';
import type { LogLevel } from './config.js';

/**
 * JSON logs. Credentials are redacted by path; the operator key is never put in a log
 * object in the first place (it lives only in the upstream client's header builder).
 */
export function createLogger(level: LogLevel, replicaId: string): Logger {
  return pino({
    level,
    base: { replica: replicaId },
    redact: {
      paths: ['req.headers.authorization', 'headers.authorization', 'authorization', 'apiKey', 'api_key', 'token'],
      censor: '[redacted]',
    },
  });
}

export type { Logger };
