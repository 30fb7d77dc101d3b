import { z } from 'zod';
import { MetergateError } from '../errors.js';

/**
 * Text that reaches Postgres must be storable as given. Postgres `text` cannot hold U+0000
 * (SQLSTATE 22021, which used to surface as a 500), and the driver encodes an unpaired UTF-16
 * surrogate as U+FFFD, silently storing something else than was sent. Both are the client's
 * mistake: a 400 naming the field, before anything is written or looked up.
 */
export const UNSTORABLE_TEXT_MESSAGE = 'must not contain NUL (U+0000) or unpaired UTF-16 surrogates';

/** A high surrogate not followed by a low one, or a low one not preceded by a high one. */
const LONE_SURROGATE_RE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

export function isStorableText(text: string): boolean {
  return !text.includes('\u0000') && !LONE_SURROGATE_RE.test(text);
}

/** Strings only; any other value is left to the field's own validation. */
export function assertStorableText(value: unknown, param: string): void {
  if (typeof value === 'string' && !isStorableText(value)) {
    throw new MetergateError('invalid_request', `${param}: ${UNSTORABLE_TEXT_MESSAGE}`, { param });
  }
}

/**
 * Every string in parsed query parameters (values may be arrays or, with an extended parser,
 * objects), checked and named by its top-level parameter.
 */
export function assertStorableQuery(query: Record<string, unknown>): void {
  for (const [name, value] of Object.entries(query)) {
    assertStorableText(name, name);
    const values = Array.isArray(value) ? value : [value];
    for (const item of values) assertStorableText(item, name);
  }
}

/** The zod form, for body schemas: `storableText.max(1000)` and the like. */
export const storableText = z.string().refine(isStorableText, UNSTORABLE_TEXT_MESSAGE);
