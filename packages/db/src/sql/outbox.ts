/**
 * The webhook outbox (migrations/0010_controls.sql): SQL fragments that write an event and its
 * deliveries inside the statement that causes it, so both commit or neither does.
 */

/** Nano-USD → a USD decimal string with all nine digits, in SQL (as formatNano does). */
export function usdSql(nanoExpression: string): string {
  return `((${nanoExpression})::numeric / 1000000000)::numeric(30, 9)::text`;
}

/**
 * Two data-modifying CTEs (always executed, referenced or not): `<name>_event` inserts one
 * event per row of `source` (which selects type, user_id, data), `<name>_fanout` one delivery
 * per live webhook subscribed to the event's type.
 */
export function emitCtes(name: string, source: string): string {
  return `${name}_event as (
    insert into webhook_events (type, user_id, data) ${source}
    returning id, type),
  ${name}_fanout as (
    insert into webhook_deliveries (event_id, webhook_id)
    select e.id, w.id from ${name}_event e join webhooks w on w.deleted_at is null and e.type = any(w.events))`;
}

/**
 * balance.low rows for accounts whose balance went from ≥ their threshold to below it:
 * `rows` has columns id, before_nano, after_nano, threshold_nano.
 */
export function balanceLowSource(rows: string): string {
  return `select 'balance.low', x.id, jsonb_build_object('user_id', x.id, 'balance_usd', ${usdSql('x.after_nano')},
            'threshold_usd', ${usdSql('x.threshold_nano')})
       from ${rows} x
      where x.threshold_nano is not null and x.before_nano >= x.threshold_nano and x.after_nano < x.threshold_nano`;
}
