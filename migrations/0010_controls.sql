-- Operator controls (issue 13): spend limits with reset periods, model allow/deny lists and
-- rate limits on a user and on a key, enforced inside the admission statement against the
-- same holds as the balance (packages/db/src/sql/requests.ts: admit).
--
-- Invariants, kept by every statement that opens or closes a request (admission, settle,
-- markFailed, voidRequest) and checked by `verify`:
--   users.open_calls    = number of the user's open requests (in_flight, awaiting_cost, unresolved)
--   api_keys.open_calls = number of the key's open requests
--   api_keys.held_nano  = Σ hold_nano of the key's open requests
-- Requests admitted before this migration carry no key_id and count for no key.
-- Rolling upgrades across 0010: old replicas do not maintain these counters (their calls are
-- not counted as open; the release statements never take a count below 0, so no settle fails on
-- it, and verify reports the drift); upgrade all replicas together (as for 0003/0004).

alter table requests add column key_id text;
-- Open requests per key (the counters' check in verify).
create index requests_open_key on requests (key_id)
  where state in ('in_flight', 'awaiting_cost', 'unresolved') and key_id is not null;

alter table users
  add column open_calls integer not null default 0 check (open_calls >= 0),
  -- Limits (null: none). Allow/deny lists hold exact model ids and `vendor/*` patterns.
  add column requests_per_minute integer check (requests_per_minute > 0),
  add column concurrent_calls integer check (concurrent_calls > 0),
  add column models_allow text[],
  add column models_deny text[],
  -- Fixed one-minute window of admitted calls (UTC minute start and its count).
  add column rate_window_start timestamptz,
  add column rate_window_count integer not null default 0;

update users u set open_calls = (select count(*) from requests r
  where r.user_id = u.id and r.state in ('in_flight', 'awaiting_cost', 'unresolved'));

alter table api_keys
  add column open_calls integer not null default 0 check (open_calls >= 0),
  add column held_nano bigint not null default 0 check (held_nano >= 0),
  add column requests_per_minute integer check (requests_per_minute > 0),
  add column concurrent_calls integer check (concurrent_calls > 0),
  add column models_allow text[],
  add column models_deny text[],
  add column rate_window_start timestamptz,
  add column rate_window_count integer not null default 0;

-- Spend limits: one row per (scope, period). spent_nano is what was charged (after the
-- multiplier) in the period starting at period_start; the settle statement adds each charge
-- (resetting the counter when a new period has begun), the admission reads it with the row
-- locked, so both see the latest committed value. 'never' uses period_start = -infinity.
create table spend_limits (
  scope_kind text not null check (scope_kind in ('user', 'key')),
  scope_id text not null,
  period text not null check (period in ('day', 'week', 'month', 'never')),
  amount_nano bigint not null check (amount_nano >= 0),
  period_start timestamptz not null,
  spent_nano bigint not null default 0 check (spent_nano >= 0),
  updated_at timestamptz not null default now(),
  primary key (scope_kind, scope_id, period)
);

-- The start of the UTC period containing `at` (ISO weeks start on Monday); -infinity for 'never'.
create function spend_period_start(period text, at timestamptz) returns timestamptz
language sql immutable strict as $$
  select case period
    when 'never' then '-infinity'::timestamptz
    else date_trunc(period, at at time zone 'UTC') at time zone 'UTC' end
$$;

-- When the period containing `at` ends (the counter resets); null for 'never'.
create function spend_period_end(period text, at timestamptz) returns timestamptz
language sql immutable strict as $$
  select case period
    when 'never' then null
    else (date_trunc(period, at at time zone 'UTC') + ('1 ' || period)::interval) at time zone 'UTC' end
$$;

-- Limit reached: the period in which a limit.reached event was last written (one per period).
alter table spend_limits add column reached_period_start timestamptz;

-- Low-balance alert threshold per user (null: none): a balance.low event is written by the
-- statement that takes the balance from ≥ threshold to below it (one event per crossing).
alter table users add column alert_balance_below_nano bigint check (alert_balance_below_nano >= 0);

-- Webhooks. The secret is kept as given (deliveries are signed with it) and never returned.
create table webhooks (
  id text primary key,
  url text not null check (url ~ '^https?://'),
  secret text not null check (length(secret) between 16 and 256),
  events text[] not null,
  created_at timestamptz not null default now(),
  deleted_at timestamptz
);

-- The outbox: each event is written in the same statement as its cause, with one delivery
-- row per live webhook subscribed to its type. The event id is stable across retries.
create table webhook_events (
  id uuid primary key default gen_random_uuid(),
  type text not null check (type in ('balance.low', 'limit.reached', 'request.unresolved', 'credits.granted')),
  user_id text,
  data jsonb not null,
  created_at timestamptz not null default now()
);
create index webhook_events_created on webhook_events (created_at desc);

create table webhook_deliveries (
  id bigint generated always as identity primary key,
  event_id uuid not null references webhook_events (id),
  webhook_id text not null references webhooks (id),
  state text not null default 'pending' check (state in ('pending', 'delivered', 'failed')),
  attempts integer not null default 0,
  -- Due time; a claim pushes it forward by the claim lease, so a replica killed mid-delivery
  -- leaves the row due again for any replica (at-least-once).
  next_attempt_at timestamptz not null default now(),
  -- The replica that claimed it last (operators: who is delivering).
  claimed_by text,
  last_status integer,
  last_error text,
  delivered_at timestamptz,
  created_at timestamptz not null default now(),
  unique (event_id, webhook_id)
);
create index webhook_deliveries_due on webhook_deliveries (next_attempt_at) where state = 'pending';
create index webhook_deliveries_webhook on webhook_deliveries (webhook_id, id desc);

-- The delivery log: one row per attempt.
create table webhook_attempts (
  id bigint generated always as identity primary key,
  delivery_id bigint not null references webhook_deliveries (id),
  attempted_at timestamptz not null default now(),
  status integer,
  error text,
  duration_ms integer not null
);
create index webhook_attempts_delivery on webhook_attempts (delivery_id, id desc);
