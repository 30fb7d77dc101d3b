import type { z } from 'zod';
import { MetergateError } from '../errors.js';

/**
 * An admin JSON body through its strict schema: the first problem is a 400 `invalid_request`
 * whose `param` names the field (an unknown field by its own name), so a script can tell
 * which of its inputs to fix.
 */
export function parseBody<T extends z.ZodType>(schema: T, input: unknown): z.infer<T> {
  const result = schema.safeParse(input ?? {});
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const param = issue.code === 'unrecognized_keys' ? issue.keys[0] : issue.path.join('.');
  const message = issue.code === 'unrecognized_keys' ? `unknown field ${JSON.stringify(param)}` : issue.message;
  throw new MetergateError('invalid_request', `${param || 'body'}: ${message}`, { param: param || undefined });
}
