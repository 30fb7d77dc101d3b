import { createHash } from 'node:crypto';
import type { Request } from 'express';
import { MetergateError } from '../errors.js';
import { jsonDepthMax } from '../http/json-depth.js';

export const IDEMPOTENCY_HEADER = 'idempotency-key';
const KEY_LENGTH_MAX = 255;
// Printable ASCII without leading or trailing blanks (Stripe's keys, UUIDs, ULIDs all fit).
const KEY_RE = /^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$/;

/** The request's Idempotency-Key, null when absent; 400 when malformed. */
export function idempotencyKeyOf(req: Request): string | null {
  const value = req.headers[IDEMPOTENCY_HEADER];
  if (value === undefined) return null;
  const key = Array.isArray(value) ? value.join(', ') : value;
  if (key.length === 0 || key.length > KEY_LENGTH_MAX || !KEY_RE.test(key)) {
    throw new MetergateError('invalid_request',
      `the Idempotency-Key header must be 1 to ${KEY_LENGTH_MAX} printable ASCII characters`, { param: 'Idempotency-Key' });
  }
  return key;
}

/**
 * sha256 of the body in canonical JSON (object keys sorted, no whitespace), so a retry that
 * re-serializes the same request differently still matches, and any real change does not.
 */
export function bodyHash(body: unknown): Buffer {
  return createHash('sha256').update(canonicalJson(body)).digest();
}

/**
 * Recursive, so it refuses (400) anything deeper than jsonDepthMax rather than overflow the
 * stack; request bodies are checked against the same limit before they get here.
 */
export function canonicalJson(value: unknown, depth = 1): string {
  if (typeof value === 'object' && value !== null && depth > jsonDepthMax) {
    throw new MetergateError('invalid_request', `the JSON body nests arrays and objects deeper than ${jsonDepthMax} levels`);
  }
  if (Array.isArray(value)) return `[${value.map((item) => canonicalJson(item, depth + 1)).join(',')}]`;
  if (typeof value === 'object' && value !== null) {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, item]) => item !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([name, item]) => `${JSON.stringify(name)}:${canonicalJson(item, depth + 1)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}
