import { createServer, createConnection, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';

export interface TcpProxy {
  /** 127.0.0.1 port that forwards to the target. */
  readonly port: number;
  /** `url` with its host and port replaced by the proxy's (for DATABASE_URL and the like). */
  via(url: string): string;
  /**
   * The target becomes unreachable: every open connection is reset and new ones are closed as
   * soon as they are accepted, as when a database restarts or fails over.
   */
  pause(): void;
  resume(): void;
  readonly paused: boolean;
  /** Connections accepted since start (paused or not). */
  readonly accepted: number;
  close(): Promise<void>;
}

/**
 * A pausable TCP forwarder on 127.0.0.1, for tests that need "the database is unreachable
 * now" without touching the database itself (other clients keep using it directly).
 */
export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  const open = new Set<Socket>();
  let paused = false;
  let accepted = 0;
  const server: Server = createServer((client) => {
    accepted += 1;
    if (paused) {
      client.resetAndDestroy();
      return;
    }
    const upstream = createConnection({ host: target.host, port: target.port });
    open.add(client);
    open.add(upstream);
    const drop = () => {
      open.delete(client);
      open.delete(upstream);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    port,
    get paused() { return paused; },
    get accepted() { return accepted; },
    via(url) {
      const parsed = new URL(url);
      parsed.hostname = '127.0.0.1';
      parsed.port = String(port);
      return parsed.toString();
    },
    pause() {
      paused = true;
      for (const socket of open) socket.resetAndDestroy();
      open.clear();
    },
    resume() {
      paused = false;
    },
    close() {
      for (const socket of open) socket.destroy();
      open.clear();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
