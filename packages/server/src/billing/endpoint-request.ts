import { MetergateError } from '../errors.js';
import { assertStorableText } from '../http/text-fields.js';
import type { ChatBody } from './chat-body.js';
import { isRecord } from './endpoint.js';

/**
 * What every endpoint's request reader checks (as chat does): a JSON object, its required
 * input present (`required` names it and says what it must be), `stream` a boolean, `model` a
 * non-empty storable string, and `models` storable.
 */
export function readRequest(body: unknown, required: { field: string; ok: (value: unknown) => boolean; what: string }): ChatBody {
  if (!isRecord(body)) throw new MetergateError('invalid_request', 'the request body must be a JSON object');
  if (!required.ok(body[required.field])) {
    throw new MetergateError('invalid_request', `\`${required.field}\` is required and must be ${required.what}`, { param: required.field });
  }
  if (body['stream'] !== undefined && typeof body['stream'] !== 'boolean') {
    throw new MetergateError('invalid_request', '`stream` must be a boolean', { param: 'stream' });
  }
  if (body['model'] !== undefined && (typeof body['model'] !== 'string' || body['model'] === '')) {
    throw new MetergateError('invalid_request', '`model` must be a non-empty string', { param: 'model' });
  }
  assertStorableText(body['model'], 'model');
  if (Array.isArray(body['models'])) for (const model of body['models']) assertStorableText(model, 'models');
  return { raw: body, stream: body['stream'] === true, model: typeof body['model'] === 'string' ? body['model'] : null };
}

export const nonEmptyArray = (value: unknown): boolean => Array.isArray(value) && value.length > 0;
export const textOrItems = (value: unknown): boolean => (typeof value === 'string' && value !== '') || nonEmptyArray(value);

/** A positive integer output limit, when the field is sent; a 400 when it is something else. */
export function assertOutputLimit(raw: Record<string, unknown>, field: string): void {
  const value = raw[field];
  if (value === undefined || value === null) return;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
    throw new MetergateError('invalid_request', `\`${field}\` must be a positive integer`, { param: field });
  }
}

/** The body sent upstream: the client's, with `user` set to the paying user and reserve mode's output limit. */
export function withUserAndLimit(raw: Record<string, unknown>, userId: string, limitField: string | null, injectedMaxTokens: number | null): string {
  const limit = injectedMaxTokens === null || limitField === null ? {} : { [limitField]: injectedMaxTokens };
  return JSON.stringify({ ...raw, ...limit, user: userId });
}
