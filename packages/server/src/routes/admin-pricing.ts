/**
 * Resale pricing (admin token): the default multiplier every user pays, and per-user
 * overrides. Multipliers travel as decimal strings ("1.25", at most 6 decimals), never JSON
 * numbers, like money. They apply to settles from the moment they are stored, on every replica.
 */
import { Router, type Request } from 'express';
import { z } from 'zod';
import { pricing } from '@metergate/db';
import { requireAdmin } from '../auth/middleware.js';
import { MetergateError } from '../errors.js';
import { jsonBody } from '../http/json-body.js';
import { parseBody } from '../http/parse-body.js';
import { assertStorableText } from '../http/text-fields.js';
import type { Services } from '../services.js';

const multiplierText = z.string({ error: 'must be a decimal string such as "1.25" (not a number: multipliers are exact)' });
const defaultBody = z.strictObject({ default_multiplier: multiplierText });
const userBody = z.strictObject({ multiplier: multiplierText.nullable() });

export function adminPricingRoutes(services: Services, adminToken: string): Router {
  const router = Router();
  const db = services.pools.admin;
  const auth = requireAdmin(adminToken);
  router.get('/admin/pricing', auth, async (_req, res) => {
    res.json(defaultJson(await pricing.getPricing(db)));
  });
  router.put('/admin/pricing', auth, jsonBody(services), async (req, res) => {
    const body = parseBody(defaultBody, req.body);
    await pricing.setDefaultMultiplier(db, multiplier(body.default_multiplier, 'default_multiplier'));
    res.json(defaultJson(await pricing.getPricing(db)));
  });
  router.get('/admin/users/:id/pricing', auth, async (req, res) => {
    res.json(await userPricingJson(services, userParam(req)));
  });
  router.put('/admin/users/:id/pricing', auth, jsonBody(services), async (req, res) => {
    const body = parseBody(userBody, req.body);
    const ppm = body.multiplier === null ? null : multiplier(body.multiplier, 'multiplier');
    if (!(await pricing.setUserMultiplier(db, userParam(req), ppm))) throw new MetergateError('not_found', `no user ${userParam(req)}`);
    res.json(await userPricingJson(services, userParam(req)));
  });
  return router;
}

function multiplier(text: string, param: string): bigint {
  try {
    return pricing.parseMultiplier(text);
  } catch (error) {
    if (error instanceof pricing.MultiplierFormatError) throw new MetergateError('invalid_request', `${param}: ${error.message}`, { param });
    throw error;
  }
}

function defaultJson(current: pricing.Pricing) {
  return { default_multiplier: pricing.formatMultiplier(current.defaultPpm), updated_at: current.updatedAt.toISOString() };
}

async function userPricingJson(services: Services, userId: string) {
  const current = await pricing.getPricing(services.pools.admin, userId);
  if (!current.userExists) throw new MetergateError('not_found', `no user ${userId}`);
  return {
    user_id: userId,
    multiplier: current.userPpm === null ? null : pricing.formatMultiplier(current.userPpm),
    default_multiplier: pricing.formatMultiplier(current.defaultPpm),
    effective_multiplier: pricing.formatMultiplier(current.effectivePpm),
  };
}

function userParam(req: Request): string {
  const value = req.params.id;
  assertStorableText(value, 'id');
  return typeof value === 'string' ? value : '';
}
