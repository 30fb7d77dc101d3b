import { MetergateError } from '../errors.js';

/**
 * The deepest nesting of arrays and objects we accept in a JSON body (the body itself is
 * level 1). JSON.parse copes with any depth, but everything after it that walks the value
 * recursively — JSON.stringify for the upstream body, the idempotency hash, zod — overflows
 * the stack somewhere past a few thousand levels; no real chat body nests beyond a dozen.
 */
export const jsonDepthMax = 64;

/**
 * 400 `invalid_request` when `value` nests deeper than jsonDepthMax, naming the top-level
 * field that does. Iterative, so it cannot overflow the stack it protects.
 */
export function assertJsonDepth(value: unknown, depthMax = jsonDepthMax): void {
  const pending: Array<{ value: unknown; depth: number; field: string | null }> = [{ value, depth: 1, field: null }];
  for (let item = pending.pop(); item !== undefined; item = pending.pop()) {
    if (typeof item.value !== 'object' || item.value === null) continue;
    if (item.depth > depthMax) {
      throw new MetergateError('invalid_request',
        `the JSON body nests arrays and objects deeper than ${depthMax} levels${item.field === null ? '' : ` (in \`${item.field}\`)`}`,
        { param: item.field ?? undefined });
    }
    const isTop = item.depth === 1;
    for (const [name, child] of Object.entries(item.value)) {
      if (typeof child === 'object' && child !== null) {
        pending.push({ value: child, depth: item.depth + 1, field: isTop && !Array.isArray(item.value) ? name : item.field });
      }
    }
  }
}
