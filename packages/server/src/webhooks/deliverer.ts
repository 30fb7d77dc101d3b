import { performance } from 'node:perf_hooks';
import { request } from 'undici';
import type pg from 'pg';
import { webhooks, type ClaimedDelivery } from '@metergate/db';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import { signatureHeader } from './signature.js';

/** Response bytes read (and kept in the log) from a receiver, at most. */
const RESPONSE_BYTES_MAX = 1024;

/**
 * Delivers the webhook outbox from any replica: every WEBHOOK_DELIVERY_INTERVAL_MS it claims
 * due deliveries (FOR UPDATE SKIP LOCKED, lease = timeout + interval), POSTs each signed event,
 * and records the attempt: 2xx delivered; anything else retried with exponential backoff until
 * WEBHOOK_ATTEMPTS_MAX, then 'failed' (replayable). At-least-once: a replica killed after the
 * POST but before recording it leaves the row due again once its lease ends, and the receiver
 * sees the same Metergate-Event-Id twice.
 */
export class WebhookDeliverer {
  #timer: NodeJS.Timeout | null = null;
  #pass: Promise<void> | null = null;
  #stopped = false;

  constructor(private readonly pool: pg.Pool, private readonly config: Config, private readonly log: Logger) {}

  start(): void {
    this.schedule();
  }

  async stop(deadlineMs: number): Promise<void> {
    this.#stopped = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    const deadline = new Promise((resolve) => setTimeout(resolve, deadlineMs).unref());
    await Promise.race([this.#pass, deadline]);
  }

  private schedule(): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.#pass = this.runOnce().then(() => undefined, (error: unknown) => {
        this.log.warn({ err: error }, 'webhook delivery pass failed; retried next interval');
      }).finally(() => this.schedule());
    }, this.config.webhookDeliveryIntervalMs);
    this.#timer.unref();
  }

  /** Claims and delivers until nothing is due; returns how many attempts were made. */
  async runOnce(): Promise<number> {
    let attempts = 0;
    while (!this.#stopped) {
      const claimed = await webhooks.claimDeliveries(this.pool, {
        batchMax: this.config.webhookBatchMax, claimMs: this.config.webhookTimeoutMs + this.config.webhookDeliveryIntervalMs,
        replicaId: this.config.replicaId,
      });
      await Promise.all(claimed.map((delivery) => this.deliver(delivery)));
      attempts += claimed.length;
      if (claimed.length < this.config.webhookBatchMax) break;
    }
    return attempts;
  }

  private async deliver(delivery: ClaimedDelivery): Promise<void> {
    const body = JSON.stringify({
      id: delivery.event.id, type: delivery.event.type, created_at: delivery.event.createdAt.toISOString(), data: delivery.event.data,
    });
    const started = performance.now();
    let status: number | null = null;
    let error: string | null = null;
    try {
      const response = await request(delivery.url, {
        method: 'POST', body, headersTimeout: this.config.webhookTimeoutMs, bodyTimeout: this.config.webhookTimeoutMs,
        signal: AbortSignal.timeout(this.config.webhookTimeoutMs),
        headers: {
          'content-type': 'application/json', 'user-agent': 'Metergate-Webhooks/1',
          'metergate-event-id': delivery.event.id, 'metergate-signature': signatureHeader(delivery.secret, Math.floor(Date.now() / 1000), body),
        },
      });
      status = response.statusCode;
      const text = await readSome(response.body);
      if (status < 200 || status >= 300) error = `HTTP ${status}: ${text}`;
    } catch (caught) {
      error = caught instanceof Error ? `${caught.name}: ${caught.message}` : String(caught);
    }
    const delivered = error === null;
    const retryAt = delivered || delivery.attempts >= this.config.webhookAttemptsMax ? null : new Date(Date.now() + this.backoffMs(delivery.attempts));
    await webhooks.recordAttempt(this.pool, { deliveryId: delivery.id, status, error, durationMs: performance.now() - started, delivered, retryAt });
    if (!delivered) this.log.info({ deliveryId: delivery.id, eventId: delivery.event.id, attempts: delivery.attempts, error, retryAt }, 'webhook delivery failed');
  }

  private backoffMs(attempts: number): number {
    const exponential = this.config.webhookBackoffMs * 2 ** Math.min(attempts - 1, 30);
    return Math.min(exponential, this.config.webhookBackoffMsMax);
  }
}

/** The first RESPONSE_BYTES_MAX bytes of a receiver's answer (the rest is not read). */
async function readSome(body: AsyncIterable<Buffer>): Promise<string> {
  const chunks: Buffer[] = [];
  let bytes = 0;
  for await (const chunk of body) {
    chunks.push(chunk);
    bytes += chunk.length;
    if (bytes >= RESPONSE_BYTES_MAX) break; // leaving the loop destroys the stream
  }
  return Buffer.concat(chunks).subarray(0, RESPONSE_BYTES_MAX).toString('utf8');
}
