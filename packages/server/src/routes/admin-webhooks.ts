/**
 * Webhooks (admin token), the Contract of issue 13:
 * - POST /admin/webhooks {"url", "secret", "events": [...]} → 201 {"id", "url", "events", "created_at"}
 *   (the secret signs deliveries and is never returned); GET /admin/webhooks; DELETE /admin/webhooks/:id;
 *   GET /admin/webhooks/:id/deliveries?limit&cursor (newest first, the delivery log).
 * - PUT /admin/users/:id/alerts {"balance_below_usd": "0.50"} (null clears): the balance.low threshold.
 */
import { randomBytes } from 'node:crypto';
import { Router, type Request } from 'express';
import { z } from 'zod';
import { formatNano, usdTextToNano, webhooks, WEBHOOK_EVENT_TYPES, type DeliveryRow, type Webhook } from '@metergate/db';
import { requireAdmin } from '../auth/middleware.js';
import { MetergateError } from '../errors.js';
import { jsonBody } from '../http/json-body.js';
import { assertStorableText, storableText } from '../http/text-fields.js';
import type { Services } from '../services.js';

const AMOUNT_RE = /^\d{1,12}(\.\d{1,9})?$/;
const DELIVERIES_LIMIT_MAX = 1000;

const createBody = z.strictObject({
  url: storableText.pipe(z.string().max(2048).url().refine((url) => /^https?:\/\//i.test(url), 'url must be http:// or https://')),
  secret: storableText.pipe(z.string().min(16, 'secret must be at least 16 characters').max(256)),
  events: z.array(z.enum(WEBHOOK_EVENT_TYPES)).min(1).refine((list) => new Set(list).size === list.length, 'events must not repeat'),
});
const alertsBody = z.strictObject({
  balance_below_usd: z.string({ error: 'balance_below_usd must be a decimal string such as "0.50" (not a number: money is never a float)' })
    .refine((text) => AMOUNT_RE.test(text.trim()), 'balance_below_usd must be a non-negative decimal string with at most 9 decimals').nullable(),
});

export function adminWebhookRoutes(services: Services, adminToken: string): Router {
  const router = Router();
  const db = services.pools.admin;
  const auth = requireAdmin(adminToken);
  router.post('/admin/webhooks', auth, jsonBody(services), async (req, res) => {
    const body = parse(createBody, req.body);
    const hook = await webhooks.createWebhook(db, { id: `wh_${randomBytes(9).toString('base64url')}`, ...body });
    res.status(201).json(webhookJson(hook));
  });
  router.get('/admin/webhooks', auth, async (_req, res) => {
    res.json({ data: (await webhooks.listWebhooks(db)).map(webhookJson) });
  });
  router.delete('/admin/webhooks/:id', auth, async (req, res) => {
    const id = param(req, 'id');
    if (!(await webhooks.deleteWebhook(db, id))) throw new MetergateError('not_found', `no webhook ${id}`);
    res.json({ id, deleted: true });
  });
  router.get('/admin/webhooks/:id/deliveries', auth, async (req, res) => {
    const id = param(req, 'id');
    const { limit, cursor } = deliveriesQuery(req);
    const rows = await webhooks.listDeliveries(db, id, limit, cursor);
    if (rows === null) throw new MetergateError('not_found', `no webhook ${id}`);
    res.json({ data: rows.map(deliveryJson), next_cursor: rows.length === limit ? rows.at(-1)!.id : null });
  });
  router.put('/admin/users/:id/alerts', auth, jsonBody(services), async (req, res) => {
    const id = param(req, 'id');
    const body = parse(alertsBody, req.body);
    const threshold = body.balance_below_usd === null ? null : usdTextToNano(body.balance_below_usd);
    if (!(await webhooks.setBalanceAlert(db, id, threshold))) throw new MetergateError('not_found', `no user ${id}`);
    res.json({ id, balance_below_usd: threshold === null ? null : formatNano(threshold) });
  });
  return router;
}

function deliveriesQuery(req: Request): { limit: number; cursor: string | null } {
  const { limit, cursor, ...rest } = req.query;
  const unknown = Object.keys(rest)[0];
  if (unknown !== undefined) throw new MetergateError('invalid_request', `unknown query parameter ${unknown}`, { param: unknown });
  const n = limit === undefined ? 100 : Number(limit);
  if (!Number.isInteger(n) || n < 1 || n > DELIVERIES_LIMIT_MAX) {
    throw new MetergateError('invalid_request', `limit must be an integer from 1 to ${DELIVERIES_LIMIT_MAX}`, { param: 'limit' });
  }
  if (cursor !== undefined && (typeof cursor !== 'string' || !/^\d{1,18}$/.test(cursor))) {
    throw new MetergateError('invalid_request', 'cursor must be a next_cursor from an earlier page', { param: 'cursor' });
  }
  return { limit: n, cursor: typeof cursor === 'string' ? cursor : null };
}

function webhookJson(hook: Webhook): Record<string, unknown> {
  return { id: hook.id, url: hook.url, events: hook.events, created_at: hook.createdAt.toISOString() };
}

function deliveryJson(row: DeliveryRow): Record<string, unknown> {
  return {
    id: row.id, event_id: row.eventId, event_type: row.eventType, state: row.state, attempts: row.attempts,
    next_attempt_at: row.state === 'pending' ? row.nextAttemptAt.toISOString() : null, last_status: row.lastStatus,
    last_error: row.lastError, delivered_at: row.deliveredAt?.toISOString() ?? null, created_at: row.createdAt.toISOString(),
  };
}

function param(req: Request, name: string): string {
  const value = req.params[name];
  assertStorableText(value, name);
  return typeof value === 'string' ? value : '';
}

function parse<T extends z.ZodType>(schema: T, input: unknown): z.infer<T> {
  const result = schema.safeParse(input ?? {});
  if (!result.success) {
    const issue = result.error.issues[0]!;
    throw new MetergateError('invalid_request', `${issue.path.join('.') || 'body'}: ${issue.message}`, { param: issue.path.join('.') || undefined });
  }
  return result.data;
}
