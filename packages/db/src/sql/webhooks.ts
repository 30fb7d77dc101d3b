import type { Queryable } from './queryable.js';

/** Webhooks and their outbox (migrations/0010_controls.sql; events are written by outbox.ts fragments). */
export const WEBHOOK_EVENT_TYPES = ['balance.low', 'limit.reached', 'request.unresolved', 'credits.granted'] as const;
export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];

export interface Webhook { id: string; url: string; events: string[]; createdAt: Date }

export async function createWebhook(db: Queryable, hook: { id: string; url: string; secret: string; events: string[] }): Promise<Webhook> {
  const result = await db.query<{ id: string; url: string; events: string[]; created_at: Date }>(
    `insert into webhooks (id, url, secret, events) values ($1::text, $2::text, $3::text, $4::text[])
     returning id, url, events, created_at`,
    [hook.id, hook.url, hook.secret, hook.events],
  );
  const row = result.rows[0]!;
  return { id: row.id, url: row.url, events: row.events, createdAt: row.created_at };
}

export async function listWebhooks(db: Queryable): Promise<Webhook[]> {
  const result = await db.query<{ id: string; url: string; events: string[]; created_at: Date }>(
    'select id, url, events, created_at from webhooks where deleted_at is null order by created_at, id',
  );
  return result.rows.map((row) => ({ id: row.id, url: row.url, events: row.events, createdAt: row.created_at }));
}

/** Deleted webhooks keep their rows (the delivery log refers to them) and get no more deliveries. */
export async function deleteWebhook(db: Queryable, id: string): Promise<boolean> {
  const result = await db.query('update webhooks set deleted_at = now() where id = $1::text and deleted_at is null', [id]);
  return result.rowCount === 1;
}

export interface DeliveryRow {
  id: string; eventId: string; eventType: string; state: string; attempts: number; nextAttemptAt: Date;
  lastStatus: number | null; lastError: string | null; deliveredAt: Date | null; createdAt: Date;
}

/** A webhook's deliveries, newest first (null when the webhook never existed). */
export async function listDeliveries(db: Queryable, webhookId: string, limit: number, beforeId: string | null): Promise<DeliveryRow[] | null> {
  const exists = await db.query('select 1 from webhooks where id = $1::text', [webhookId]);
  if (exists.rowCount !== 1) return null;
  const result = await db.query<{
    id: string; event_id: string; type: string; state: string; attempts: number; next_attempt_at: Date; last_status: number | null;
    last_error: string | null; delivered_at: Date | null; created_at: Date;
  }>(
    `select d.id::text, d.event_id::text, e.type, d.state, d.attempts, d.next_attempt_at, d.last_status, d.last_error, d.delivered_at, d.created_at
       from webhook_deliveries d join webhook_events e on e.id = d.event_id
      where d.webhook_id = $1::text and ($3::bigint is null or d.id < $3::bigint)
      order by d.id desc limit $2::integer`,
    [webhookId, limit, beforeId],
  );
  return result.rows.map((row) => ({
    id: row.id, eventId: row.event_id, eventType: row.type, state: row.state, attempts: row.attempts, nextAttemptAt: row.next_attempt_at,
    lastStatus: row.last_status, lastError: row.last_error, deliveredAt: row.delivered_at, createdAt: row.created_at,
  }));
}

export interface ClaimedDelivery {
  id: string; attempts: number; url: string; secret: string;
  event: { id: string; type: string; createdAt: Date; data: unknown };
}

/**
 * Claims due deliveries of live webhooks: FOR UPDATE SKIP LOCKED keeps other replicas off the
 * same rows, and pushing next_attempt_at forward by the claim lease keeps them off after
 * commit. A replica that dies mid-delivery leaves the row due again when the lease ends.
 */
export async function claimDeliveries(db: Queryable, options: { batchMax: number; claimMs: number; replicaId: string }): Promise<ClaimedDelivery[]> {
  const result = await db.query<{
    id: string; attempts: number; url: string; secret: string; event_id: string; type: string; created_at: Date; data: unknown;
  }>(
    `with due as (
       select d.id from webhook_deliveries d join webhooks w on w.id = d.webhook_id and w.deleted_at is null
        where d.state = 'pending' and d.next_attempt_at <= now()
        order by d.next_attempt_at limit $1::integer
          for update of d skip locked),
     claimed as (
       update webhook_deliveries d set attempts = d.attempts + 1, next_attempt_at = now() + $2::integer * interval '1 millisecond',
              claimed_by = $3::text
         from due where d.id = due.id
       returning d.id, d.attempts, d.webhook_id, d.event_id)
     select c.id::text, c.attempts, w.url, w.secret, e.id::text as event_id, e.type, e.created_at, e.data
       from claimed c join webhooks w on w.id = c.webhook_id join webhook_events e on e.id = c.event_id
      order by c.id`,
    [options.batchMax, options.claimMs, options.replicaId],
  );
  return result.rows.map((row) => ({
    id: row.id, attempts: row.attempts, url: row.url, secret: row.secret,
    event: { id: row.event_id, type: row.type, createdAt: row.created_at, data: row.data },
  }));
}

export interface AttemptResult {
  deliveryId: string;
  status: number | null;
  error: string | null;
  durationMs: number;
  /** Delivered (2xx), retried at retryAt, or given up (retryAt null, not delivered). */
  delivered: boolean;
  retryAt: Date | null;
}

/** Logs one attempt and moves its delivery on, in one statement. */
export async function recordAttempt(db: Queryable, attempt: AttemptResult): Promise<void> {
  await db.query(
    `with logged as (
       insert into webhook_attempts (delivery_id, status, error, duration_ms) values ($1::bigint, $2::integer, $3::text, $4::integer))
     update webhook_deliveries
        set state = case when $5::boolean then 'delivered' when $6::timestamptz is null then 'failed' else 'pending' end,
            delivered_at = case when $5::boolean then now() else delivered_at end,
            next_attempt_at = coalesce($6::timestamptz, next_attempt_at),
            last_status = $2::integer, last_error = $3::text
      where id = $1::bigint and state = 'pending'`,
    [attempt.deliveryId, attempt.status, attempt.error, Math.round(attempt.durationMs), attempt.delivered, attempt.retryAt],
  );
}

/**
 * Replay: the event's deliveries (to one webhook, or every live one subscribed to its type,
 * creating rows as needed) become pending and due now, whatever their state. Returns how many.
 */
export async function replayEvent(db: Queryable, eventId: string, webhookId: string | null): Promise<number | null> {
  const result = await db.query<{ n: number; found: boolean }>(
    `with event as (select id, type from webhook_events where id = $1::uuid),
     targets as (
       select w.id from webhooks w cross join event e
        where w.deleted_at is null and ($2::text is null and e.type = any(w.events) or w.id = $2::text)),
     upserted as (
       insert into webhook_deliveries (event_id, webhook_id)
       select $1::uuid, t.id from targets t
       on conflict (event_id, webhook_id) do update set state = 'pending', next_attempt_at = now(), attempts = 0
       returning 1)
     select (select count(*) from upserted)::integer as n, exists (select 1 from event) as found`,
    [eventId, webhookId],
  );
  const row = result.rows[0]!;
  return row.found ? row.n : null;
}

/** The user's low-balance threshold (null clears); false when the user does not exist. */
export async function setBalanceAlert(db: Queryable, userId: string, thresholdNano: bigint | null): Promise<boolean> {
  const result = await db.query('update users set alert_balance_below_nano = $2::bigint where id = $1::text', [userId, thresholdNano?.toString() ?? null]);
  return result.rowCount === 1;
}
