/**
 * Errors after which the upstream may have started, and billed, a generation: the request
 * reached it (not a refused connection) and then the call failed, or it answered 200 and the
 * body broke off. Such an attempt is never run again under the same Idempotency-Key. A mark on
 * the error object itself, so it survives being rethrown through the barrier unchanged.
 */
const started = new WeakSet<object>();

export function markUpstreamStarted<T>(error: T): T {
  if (typeof error === 'object' && error !== null) started.add(error);
  return error;
}

export function upstreamMayHaveBilled(error: unknown): boolean {
  return typeof error === 'object' && error !== null && started.has(error);
}
