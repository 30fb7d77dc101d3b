import type { NextFunction, Request, Response } from 'express';
import { controls } from '@metergate/db';
import { MetergateError } from '../errors.js';
import type { Services } from '../services.js';
import { bearerToken, hashApiKey, tokensEqual } from './api-keys.js';

/** Resolves the caller's user and key (and their model rules) into res.locals; 401 otherwise. */
export function requireUser(services: Services, options: { apiKeyHeader?: boolean } = {}) {
  return async (req: Request, res: Response, next: NextFunction): Promise<void> => {
    // Anthropic's SDK sends `x-api-key` (on /messages only); neither header is ever forwarded.
    const header = req.headers['x-api-key'];
    const token = bearerToken(req.headers.authorization) ?? (options.apiKeyHeader === true && typeof header === 'string' && header !== '' ? header : null);
    if (token === null) {
      throw new MetergateError('invalid_api_key', options.apiKeyHeader === true
        ? 'missing API key: send "x-api-key: <key>" or "Authorization: Bearer <key>"'
        : 'missing API key: send "Authorization: Bearer <key>"');
    }
    const hash = hashApiKey(token);
    let owner = services.keyCache.get(hash);
    if (owner === null) {
      owner = await controls.findKeyWithRules(services.pools.write, hash);
      if (owner !== null) services.keyCache.set(hash, owner);
    }
    if (owner === null || owner.revoked) {
      throw new MetergateError('invalid_api_key', owner === null ? 'invalid API key' : 'this API key has been revoked');
    }
    res.locals.userId = owner.userId;
    res.locals.keyId = owner.keyId;
    // The user's and the key's model rules, as fresh as the key cache (AUTH_CACHE_MS).
    res.locals.modelRules = { user: owner.user, key: owner.key };
    next();
  };
}

export function requireAdmin(adminToken: string) {
  return (req: Request, _res: Response, next: NextFunction): void => {
    const token = bearerToken(req.headers.authorization);
    if (token === null || !tokensEqual(token, adminToken)) {
      throw new MetergateError('invalid_api_key', 'admin token required');
    }
    next();
  };
}
