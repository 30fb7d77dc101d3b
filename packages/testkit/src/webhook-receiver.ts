import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ReceivedWebhook {
  body: string;
  headers: IncomingMessage['headers'];
  receivedAt: number;
}

export interface WebhookReceiver {
  readonly url: string;
  readonly port: number;
  readonly received: ReceivedWebhook[];
  /** Decides each answer (default 200); return null to leave the request hanging. */
  respond: (hook: ReceivedWebhook, index: number) => number | null;
  close(): Promise<void>;
}

/** A real HTTP receiver on 127.0.0.1 (port 0, or a given one to come back up on). */
export async function startWebhookReceiver(port = 0): Promise<WebhookReceiver> {
  const hanging = new Set<ServerResponse>();
  const receiver: WebhookReceiver = {
    url: '', port: 0, received: [], respond: () => 200,
    close: async () => {
      for (const res of hanging) res.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const hook = { body: Buffer.concat(chunks).toString('utf8'), headers: req.headers, receivedAt: Date.now() };
      receiver.received.push(hook);
      const status = receiver.respond(hook, receiver.received.length - 1);
      if (status === null) {
        hanging.add(res);
        return;
      }
      res.writeHead(status, { 'content-type': 'text/plain' }).end(status < 300 ? 'ok' : 'no');
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  const address = server.address() as AddressInfo;
  return Object.assign(receiver, { url: `http://127.0.0.1:${address.port}/hooks`, port: address.port });
}
