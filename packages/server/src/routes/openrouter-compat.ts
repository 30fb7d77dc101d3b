import { Router } from 'express';
import { controls, keyUsage, nanoToUsdNumber, users } from '@metergate/db';
import { requireUser } from '../auth/middleware.js';
import { MetergateError } from '../errors.js';
import type { Services } from '../services.js';
import { readBody } from '../upstream/read-body.js';
import { bindingLimit } from '../controls/key-limit.js';
import { hasRules, modelAllowed, type CallerRules } from '../controls/model-rules.js';

const MODELS_BYTES_MAX = 16 * 1024 * 1024;

/** /v1/credits, /v1/key and /v1/models, answered as OpenRouter answers them (USD as numbers). */
export function compatRoutes(services: Services): Router {
  const router = Router();
  const auth = requireUser(services);
  const models = modelsCache(services);
  for (const base of ['/v1', '/api/v1']) {
    router.get(`${base}/credits`, auth, async (_req, res) => {
      const user = await users.getUser(services.pools.write, res.locals.userId as string);
      if (user === null) throw new MetergateError('invalid_api_key', 'the user of this key no longer exists');
      // OpenRouter's two fields, plus what is held for calls whose cost is not known yet and
      // what is available to start new ones (balance − held).
      res.json({ data: {
        total_credits: nanoToUsdNumber(user.creditsNano), total_usage: nanoToUsdNumber(user.usageNano),
        total_held: nanoToUsdNumber(user.heldNano), available: nanoToUsdNumber(user.balanceNano - user.heldNano),
      } });
    });
    router.get(`${base}/key`, auth, async (_req, res) => {
      res.json({ data: await keyInfo(services, res.locals.userId as string, res.locals.keyId as string) });
    });
    router.get(`${base}/models`, auth, async (_req, res) => {
      const { status, body } = await models();
      // Only the models this user and key may use (the list is filtered per caller, not cached so).
      res.status(status).type('application/json').send(status === 200 ? allowedModels(res.locals.modelRules as CallerRules, body) : body);
    });
  }
  return router;
}

/**
 * OpenRouter's GET /key shape for the calling key. Usage is the user's (all of its keys), today
 * / this ISO week / this month in UTC from the rollups. The limit is the spend limit (the key's
 * or its user's, day/week/month/never) with the least left, with its reset and what remains of
 * it (never more than the available balance); with no spend limit it is the user's credits,
 * what remains is what is available to start calls (balance − held), and there is no reset.
 * `limit_resets_at` (ours) is when that limit's period ends. No expiry; BYOK calls are charged
 * in full, so they count towards the limit. The label is the key's id (the key is never stored).
 */
async function keyInfo(services: Services, userId: string, keyId: string): Promise<Record<string, unknown>> {
  const db = services.pools.write;
  const user = await users.getUser(db, userId);
  if (user === null) throw new MetergateError('invalid_api_key', 'the user of this key no longer exists');
  const now = services.clock();
  const [periods, userLimits, keyLimits] = await Promise.all([
    keyUsage.periodUsage(db, userId, now ?? new Date()),
    controls.getControls(db, { kind: 'user', id: userId }, now), controls.getControls(db, { kind: 'key', id: keyId }, now),
  ]);
  const available = user.balanceNano - user.heldNano;
  const binding = bindingLimit([userLimits, keyLimits]);
  const remaining = binding === null || available < binding.remainingNano ? available : binding.remainingNano;
  return {
    label: keyId, limit: nanoToUsdNumber(binding?.amountNano ?? user.creditsNano), limit_remaining: nanoToUsdNumber(remaining),
    limit_reset: binding?.reset ?? null, limit_resets_at: binding?.resetsAt?.toISOString() ?? null,
    usage: nanoToUsdNumber(user.usageNano), usage_daily: nanoToUsdNumber(periods.dayNano),
    usage_weekly: nanoToUsdNumber(periods.weekNano), usage_monthly: nanoToUsdNumber(periods.monthNano),
    is_free_tier: false, expires_at: null, include_byok_in_limit: true,
  };
}

/** The upstream model list, kept for modelsCacheMs; one fetch at a time however many ask. */
function modelsCache(services: Services): () => Promise<{ status: number; body: Buffer }> {
  let cached: { at: number; value: { status: number; body: Buffer } } | null = null;
  let inFlight: Promise<{ status: number; body: Buffer }> | null = null;
  return async () => {
    if (cached !== null && Date.now() - cached.at < services.config.modelsCacheMs) return cached.value;
    inFlight ??= (async () => {
      try {
        const response = await services.upstream.models(AbortSignal.timeout(services.config.upstreamTimeoutMs));
        const value = { status: response.status, body: await readBody(response.body, MODELS_BYTES_MAX) };
        if (value.status === 200) cached = { at: Date.now(), value };
        return value;
      } finally {
        inFlight = null;
      }
    })();
    return inFlight;
  };
}

/** The upstream list without the models the caller may not use (bytes untouched without rules). */
function allowedModels(rules: CallerRules, body: Buffer): Buffer {
  if (!hasRules(rules)) return body;
  let parsed: { data?: unknown };
  try {
    parsed = JSON.parse(body.toString('utf8')) as { data?: unknown };
  } catch (error) {
    throw new MetergateError('upstream_bad_response', 'the upstream model list is not JSON', { cause: error });
  }
  if (typeof parsed !== 'object' || parsed === null || !Array.isArray(parsed.data)) {
    throw new MetergateError('upstream_bad_response', 'the upstream model list has no `data` array');
  }
  parsed.data = parsed.data.filter((model: unknown) => {
    const id = (model as { id?: unknown } | null)?.id;
    return typeof id === 'string' && modelAllowed(rules, id);
  });
  return Buffer.from(JSON.stringify(parsed));
}
