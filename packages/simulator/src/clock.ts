// One clock for every timestamp in the books, so records compare with each other and with
// timestamps taken by the proxy in the same process (performance.timeOrigin is shared).
export function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

/** Resolves after `delayMs`, or early (never rejects) when `signal` aborts. */
export function sleep(delayMs: number, signal?: AbortSignal): Promise<void> {
  if (delayMs <= 0 || signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const onAbort = (): void => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, delayMs);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Lets the event loop run I/O once; used between the two halves of a split write. */
export function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
