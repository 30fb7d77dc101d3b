/**
 * Closing stuck requests and the price book (admin token).
 * - POST /admin/requests/:id/settle {"upstream_cost_usd": "0.0012", "note"?}: charge an
 *   awaiting_cost or unresolved request what the upstream billed (priced with the user's
 *   multiplier like any settle), exactly once, releasing its hold. `cost_usd` is the field's
 *   old name, accepted for one release (0.2 drops it).
 * - POST /admin/requests/:id/void {"note"}: close one without a charge, releasing its hold.
 * - GET /admin/prices, PUT /admin/prices {"model", prices as USD strings...}: the price book the
 *   worst-case holds use; a PUT pins a model's price (refreshes from upstream leave it alone),
 *   DELETE /admin/prices?model= unpins it.
 */
import { Router, type Request } from 'express';
import { z } from 'zod';
import { ledger, priceBook, PriceFormatError, requests, usdPriceToAtto, usdTextToNano } from '@metergate/db';
import { priceJson } from '../http/price-json.js';
import { requireAdmin } from '../auth/middleware.js';
import { MetergateError } from '../errors.js';
import { jsonBody } from '../http/json-body.js';
import { parseBody } from '../http/parse-body.js';
import { entryJson } from '../http/ledger-json.js';
import type { Services } from '../services.js';

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** Plain decimals with at most 9 places (nano-USD), non-negative: an upstream bill. */
const COST_RE = /^\d{1,12}(\.\d{1,9})?$/;
const note = z.string().min(1).max(1000);
const costText = (field: string) => z.string({ error: `${field} must be a decimal string such as "0.0012" (not a number: money is never a float)` });
const settleBody = z.strictObject({
  upstream_cost_usd: costText('upstream_cost_usd').optional(),
  /** @deprecated upstream_cost_usd's old name; removed in 0.2. */
  cost_usd: costText('cost_usd').optional(),
  note: note.optional(),
});
const voidBody = z.strictObject({ note });
const price = z.string({ error: 'prices are decimal USD strings such as "0.0000025" (not numbers)' });
const tokens = z.number().int().positive().max(100_000_000).nullable().optional();
const priceBody = z.strictObject({
  model: z.string().min(1).max(256),
  prompt: price, completion: price,
  request: price.optional(), image: price.optional(), web_search: price.optional(), internal_reasoning: price.optional(),
  input_cache_read: price.optional(), input_cache_write: price.optional(),
  context_length: tokens, max_completion_tokens: tokens,
  note: z.string().max(1000).nullable().optional(),
});

export function adminHoldRoutes(services: Services, adminToken: string): Router {
  const router = Router();
  const db = services.pools.admin;
  const auth = requireAdmin(adminToken);
  router.post('/admin/requests/:id/settle', auth, jsonBody(services), async (req, res) => {
    const id = requestParam(req);
    const body = parseBody(settleBody, req.body);
    const entry = await ledger.settleUsage(db, {
      requestId: id, upstreamCostNano: operatorCostNano(body), generationId: null, promptTokens: null, completionTokens: null,
      now: services.clock(),
    }, { operatorNote: body.note ?? 'settled by an operator' });
    if (entry === null) throw await notClosable(services, id);
    services.metrics.settles.inc({ outcome: 'settled_by_operator' });
    res.status(201).json(entryJson(entry));
  });
  router.post('/admin/requests/:id/void', auth, jsonBody(services), async (req, res) => {
    const id = requestParam(req);
    const body = parseBody(voidBody, req.body);
    if (!(await requests.voidRequest(db, id, body.note))) throw await notClosable(services, id);
    res.json({ id, state: 'voided', note: body.note });
  });
  router.get('/admin/prices', auth, async (_req, res) => {
    const [prices, state] = await Promise.all([priceBook.listPrices(db), priceBook.refreshState(db)]);
    res.json({
      data: prices.map(priceJson),
      refreshed_at: state.refreshedAt?.toISOString() ?? null, last_refresh_error: state.lastError,
    });
  });
  router.put('/admin/prices', auth, jsonBody(services), async (req, res) => {
    const body = parseBody(priceBody, req.body);
    const pinned = await priceBook.pinPrice(db, {
      modelId: body.model, promptAtto: atto(body.prompt, 'prompt'), completionAtto: atto(body.completion, 'completion'),
      requestAtto: atto(body.request, 'request'), imageAtto: atto(body.image, 'image'), webSearchAtto: atto(body.web_search, 'web_search'),
      internalReasoningAtto: atto(body.internal_reasoning, 'internal_reasoning'),
      inputCacheReadAtto: atto(body.input_cache_read, 'input_cache_read'), inputCacheWriteAtto: atto(body.input_cache_write, 'input_cache_write'),
      contextLength: body.context_length ?? null, maxCompletionTokens: body.max_completion_tokens ?? null,
    }, body.note ?? null);
    await services.priceBook.reload();
    res.json(priceJson(pinned));
  });
  router.delete('/admin/prices', auth, async (req, res) => {
    const model = typeof req.query['model'] === 'string' ? req.query['model'] : '';
    if (model === '') throw new MetergateError('invalid_request', 'model is required: DELETE /admin/prices?model=vendor/name', { param: 'model' });
    if (!(await priceBook.unpinPrice(db, model))) throw new MetergateError('not_found', `no operator price for ${model}`);
    await services.priceBook.reload();
    res.json({ model, unpinned: true });
  });
  return router;
}

/** 404 for an unknown request, 409 for one that is not awaiting_cost or unresolved. */
async function notClosable(services: Services, id: string): Promise<MetergateError> {
  const row = await requests.getRequest(services.pools.admin, id);
  if (row === null) return new MetergateError('not_found', `no request ${id}`);
  return new MetergateError('conflict', `request ${id} is ${row.state}: only awaiting_cost or unresolved requests can be closed by hand`);
}

function atto(text: string | undefined, field: string): bigint {
  if (text === undefined) return 0n;
  try {
    return usdPriceToAtto(text);
  } catch (error) {
    if (!(error instanceof PriceFormatError)) throw error;
    throw new MetergateError('invalid_request', `${field}: ${error.message}`, { param: field });
  }
}

function requestParam(req: Request): string {
  const id = req.params['id'];
  if (typeof id !== 'string' || !UUID_RE.test(id)) throw new MetergateError('invalid_request', 'the request id must be a UUID', { param: 'id' });
  return id;
}

/** The bill an operator enters: under its current name or the old one, never two different ones. */
function operatorCostNano(body: z.infer<typeof settleBody>): bigint {
  const field = body.upstream_cost_usd !== undefined ? 'upstream_cost_usd' : 'cost_usd';
  const text = body.upstream_cost_usd ?? body.cost_usd;
  if (text === undefined) {
    throw new MetergateError('invalid_request', 'upstream_cost_usd is required: what the upstream billed, as a decimal string such as "0.0012"', { param: 'upstream_cost_usd' });
  }
  if (body.upstream_cost_usd !== undefined && body.cost_usd !== undefined && body.cost_usd !== body.upstream_cost_usd) {
    throw new MetergateError('invalid_request', 'send upstream_cost_usd only (cost_usd is its old name, and the two differ)', { param: 'cost_usd' });
  }
  if (!COST_RE.test(text.trim())) {
    throw new MetergateError('invalid_request', `${field} must be a non-negative decimal string with at most 9 decimals; got ${JSON.stringify(text)}`, { param: field });
  }
  return usdTextToNano(text);
}
