import { connect } from 'node:net';

/**
 * Waits until something accepts TCP connections on 127.0.0.1:port, failing early when the
 * process expected to listen there is gone (`gone()`), or after timeoutMs.
 */
export async function waitForPort(port: number, timeoutMs: number, gone: () => boolean, what: string): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (gone()) throw new Error(`${what} exited`);
    if (await canConnect(port)) return;
    if (Date.now() > until) throw new Error(`port ${port} not accepting after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => { socket.destroy(); resolve(true); });
    socket.once('error', () => resolve(false));
  });
}
