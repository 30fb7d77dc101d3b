import { Router, type Request } from 'express';
import { z } from 'zod';
import { inTransaction, keys, ledger, usdTextToNano, users, type Pools } from '@metergate/db';
import { newApiKey } from '../auth/api-keys.js';
import { requireAdmin } from '../auth/middleware.js';
import { MetergateError } from '../errors.js';
import { jsonBody } from '../http/json-body.js';
import { parseBody } from '../http/parse-body.js';
import { entryJson, userJson } from '../http/ledger-json.js';
import { assertStorableText, storableText } from '../http/text-fields.js';
import type { Services } from '../services.js';

const USER_ID_RE = /^[A-Za-z0-9][A-Za-z0-9._@:+-]{0,127}$/;

const createUserBody = z.object({ id: z.string().regex(USER_ID_RE, 'id must be 1-128 characters of A-Z a-z 0-9 . _ @ : + - starting with a letter or digit') });
const creditBody = z.object({
  amount_usd: z.string({ error: 'amount_usd must be a decimal string such as "5.00" (not a number: money is never a float)' }),
  note: storableText.max(1000).nullable().optional(),
  kind: z.enum(['grant', 'adjustment']).default('grant'),
});

export function adminRoutes(services: Services, adminToken: string): Router {
  const router = Router();
  const db = services.pools.admin;
  router.use('/admin', requireAdmin(adminToken), jsonBody(services));
  router.post('/admin/users', async (req, res) => {
    const { id } = parseBody(createUserBody, req.body);
    const created = await createUserWithKey(services.pools, id);
    if (created === null) throw new MetergateError('conflict', `user ${id} already exists`);
    res.status(201).json(created);
  });
  router.get('/admin/users/:id', async (req, res) => {
    const user = await users.getUser(db, param(req, 'id'));
    if (user === null) throw new MetergateError('not_found', `no user ${param(req, 'id')}`);
    res.json(userJson(user));
  });
  router.post('/admin/users/:id/keys', async (req, res) => {
    const key = newApiKey();
    if (!(await keys.insertKey(db, { id: key.id, userId: param(req, 'id'), hash: key.hash }))) {
      throw new MetergateError('not_found', `no user ${param(req, 'id')}`);
    }
    res.status(201).json({ id: key.id, user_id: param(req, 'id'), api_key: key.key });
  });
  router.delete('/admin/keys/:keyId', async (req, res) => {
    if (!(await keys.revokeKey(db, param(req, 'keyId')))) throw new MetergateError('not_found', `no key ${param(req, 'keyId')}`);
    services.keyCache.evictKey(param(req, 'keyId'));
    res.json({ id: param(req, 'keyId'), revoked: true });
  });
  router.post('/admin/users/:id/credits', async (req, res) => {
    const body = parseBody(creditBody, req.body);
    const amountNano = parseAmount(body.amount_usd, body.kind);
    const entry = await ledger.appendCredit(db, { userId: param(req, 'id'), kind: body.kind, amountNano, note: body.note ?? null });
    if (entry === null) throw new MetergateError('not_found', `no user ${param(req, 'id')}`);
    res.status(201).json(entryJson(entry));
  });
  return router;
}

/** The user and its first key commit together: no user without a way in. */
function createUserWithKey(pools: Pools, id: string) {
  return inTransaction(pools.admin, async (client) => {
    const user = await users.insertUser(client, id);
    if (user === null) return null;
    const key = newApiKey();
    await keys.insertKey(client, { id: key.id, userId: id, hash: key.hash });
    return { ...userJson(user), api_key: key.key, key_id: key.id };
  }, { rollbackWhen: (created) => created === null });
}

/** Plain decimals with at most 9 places (nano-USD): nothing is rounded silently. */
const AMOUNT_RE = /^[+-]?\d{1,12}(\.\d{1,9})?$/;

function parseAmount(text: string, kind: 'grant' | 'adjustment'): bigint {
  if (!AMOUNT_RE.test(text.trim())) {
    throw new MetergateError('invalid_request', `amount_usd must be a decimal string with at most 9 decimals, such as "5.00"; got ${JSON.stringify(text)}`, { param: 'amount_usd' });
  }
  const amountNano = usdTextToNano(text);
  if (amountNano === 0n) throw new MetergateError('invalid_request', 'amount_usd must not be zero', { param: 'amount_usd' });
  if (kind === 'grant' && amountNano < 0n) throw new MetergateError('invalid_request', 'a grant must be positive; use kind "adjustment" to take credit away', { param: 'amount_usd' });
  return amountNano;
}

/** A path parameter, refused (400 naming it) if Postgres could not store it as given. */
function param(req: Request, name: string): string {
  const value = req.params[name];
  assertStorableText(value, name);
  return typeof value === 'string' ? value : '';
}
