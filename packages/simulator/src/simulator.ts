import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Books } from './books.js';
import { createHandler } from './handler.js';
import { resolveSteering } from './steering.js';
import type { RequestLogEntry, Simulator, SimulatorOptions } from './types.js';

const DEFAULT_HOST = '127.0.0.1';
const DEFAULT_LOOKUP_404_MS = 300;
const DEFAULT_IDLE_TIMEOUT_MS = 10_000;
// Longer than a typical client pool's idle timeout (undici: 4 s), so the client is always the
// side that closes an idle connection and never reuses one the server is closing.
const KEEP_ALIVE_TIMEOUT_MS = 65_000;
// After close(), generations get this long to settle (they stop at once when aborted).
const CLOSE_SETTLE_MS = 2_000;

function listen(server: Server, port: number, host: string): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve(server.address() as AddressInfo);
    });
  });
}

function baseUrl(host: string, port: number): string {
  const hostPart = host.includes(':') ? `[${host}]` : host;
  return `http://${hostPart}:${port}/api/v1`;
}

async function closeServer(server: Server, books: Books): Promise<void> {
  books.stopAll();
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeAllConnections();
  await closed;
  // Bounded wait for in-flight books on close; a timeout only means some were still writing.
  await books.whenIdle(CLOSE_SETTLE_MS).catch(() => undefined);
}

/** Starts an OpenRouter simulator over HTTP. Throws on invalid `defaults`. */
export async function startSimulator(options: SimulatorOptions = {}): Promise<Simulator> {
  const defaults = options.defaults ?? {};
  resolveSteering(defaults, undefined);
  const host = options.host ?? DEFAULT_HOST;
  const books = new Books();
  const log: RequestLogEntry[] = [];
  const handler = createHandler({
    books, log, defaults,
    apiKey: options.apiKey ?? null,
    lookup404Ms: options.lookup404Ms ?? DEFAULT_LOOKUP_404_MS,
  });
  const server = createServer({ keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS }, handler);
  const address = await listen(server, options.port ?? 0, host);
  let closing: Promise<void> | null = null;
  return {
    url: baseUrl(host, address.port),
    port: address.port,
    requestLog: log,
    close: () => (closing ??= closeServer(server, books)),
    generations: () => books.records(),
    billedNano: (filter) => books.billedNano(filter),
    reset: () => {
      books.reset();
      log.length = 0;
    },
    whenIdle: (timeoutMs = DEFAULT_IDLE_TIMEOUT_MS) => books.whenIdle(timeoutMs),
  };
}
