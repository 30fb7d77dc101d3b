/**
 * Operator controls on a user or an API key (admin token), the Contract of issue 13:
 * - PUT /admin/users/:id/limits, PUT /admin/keys/:keyId/limits, body (every field optional,
 *   null clears one): {"spend": [{"amount_usd": "1.00", "period": "day"}], "requests_per_minute":
 *   60, "concurrent_calls": 4, "models": {"allow": ["openai/*"], "deny": []}} → 200 the limits
 *   as GET shows them.
 * - GET the same paths: the limits with what is spent and held in each current period, when it
 *   resets, calls open and calls started this minute.
 */
import { Router, type Request } from 'express';
import { z } from 'zod';
import { controls, SPEND_PERIODS_TEXT, usdTextToNano, type ControlsPatch, type Scope } from '@metergate/db';
import { limitsJson } from '../controls/limits-json.js';
import { requireAdmin } from '../auth/middleware.js';
import { MetergateError } from '../errors.js';
import { jsonBody } from '../http/json-body.js';
import { assertStorableText, storableText } from '../http/text-fields.js';
import { isValidPattern } from '../controls/model-rules.js';
import type { Services } from '../services.js';

const AMOUNT_RE = /^\d{1,12}(\.\d{1,9})?$/;
/** Model lists are read on every uncached key lookup: kept short. */
const MODEL_LIST_ENTRIES_MAX = 256;

const modelList = z.array(storableText.refine(isValidPattern, 'a model entry is an exact id or a vendor pattern such as "openai/*"'))
  .max(MODEL_LIST_ENTRIES_MAX).nullable().optional();
const limitsBody = z.strictObject({
  spend: z.array(z.strictObject({
    amount_usd: z.string({ error: 'amount_usd must be a decimal string such as "1.00" (not a number: money is never a float)' })
      .refine((text) => AMOUNT_RE.test(text.trim()), 'amount_usd must be a non-negative decimal string with at most 9 decimals'),
    period: z.enum(SPEND_PERIODS_TEXT),
  })).max(4).refine((list) => new Set(list.map((s) => s.period)).size === list.length, 'one spend limit per period')
    .nullable().optional(),
  requests_per_minute: z.number().int().positive().max(1_000_000).nullable().optional(),
  concurrent_calls: z.number().int().positive().max(100_000).nullable().optional(),
  models: z.strictObject({ allow: modelList, deny: modelList }).nullable().optional(),
});

export function adminControlsRoutes(services: Services, adminToken: string): Router {
  const router = Router();
  const auth = requireAdmin(adminToken);
  for (const [path, kind, name] of [['/admin/users/:id/limits', 'user', 'id'], ['/admin/keys/:keyId/limits', 'key', 'keyId']] as const) {
    router.get(path, auth, async (req, res) => {
      res.json(await readLimits(services, scopeOf(req, kind, name)));
    });
    router.put(path, auth, jsonBody(services), async (req, res) => {
      const scope = scopeOf(req, kind, name);
      const patch = toPatch(parseBody(req.body));
      if (!(await controls.putControls(services.pools.admin, scope, patch, services.clock()))) throw notFound(scope);
      // This replica's cached key lookups carry the model rules: the change applies here at once
      // (other replicas within AUTH_CACHE_MS).
      services.keyCache.clear();
      res.json(await readLimits(services, scope));
    });
  }
  return router;
}

function scopeOf(req: Request, kind: 'user' | 'key', name: string): Scope {
  const id = req.params[name];
  assertStorableText(id, name);
  return { kind, id: typeof id === 'string' ? id : '' };
}

function notFound(scope: Scope): MetergateError {
  return new MetergateError('not_found', `no ${scope.kind === 'user' ? 'user' : 'key'} ${scope.id}`);
}

function parseBody(input: unknown): z.infer<typeof limitsBody> {
  const result = limitsBody.safeParse(input ?? {});
  if (!result.success) {
    const issue = result.error.issues[0]!;
    throw new MetergateError('invalid_request', `${issue.path.join('.') || 'body'}: ${issue.message}`, { param: issue.path.join('.') || undefined });
  }
  return result.data;
}

function toPatch(body: z.infer<typeof limitsBody>): ControlsPatch {
  const patch: ControlsPatch = {};
  if (body.spend !== undefined) patch.spend = body.spend?.map((s) => ({ period: s.period, amountNano: usdTextToNano(s.amount_usd) })) ?? null;
  if (body.requests_per_minute !== undefined) patch.requestsPerMinute = body.requests_per_minute;
  if (body.concurrent_calls !== undefined) patch.concurrentCalls = body.concurrent_calls;
  if (body.models !== undefined) {
    patch.models = body.models === null ? null : {
      ...(body.models.allow !== undefined ? { allow: body.models.allow } : {}),
      ...(body.models.deny !== undefined ? { deny: body.models.deny } : {}),
    };
  }
  return patch;
}

async function readLimits(services: Services, scope: Scope): Promise<Record<string, unknown>> {
  const state = await controls.getControls(services.pools.admin, scope, services.clock());
  if (state === null) throw notFound(scope);
  return limitsJson(state);
}
