-- Holds (two-phase admission): every admitted call reserves its worst-case cost until its
-- real cost lands, so admission sees costs that are still unknown.
--
-- Invariant, kept by every statement that moves a request between states (packages/db/src/
-- sql/requests.ts, ledger.ts) and checked by `verify`:
--   users.held_nano = Σ requests.hold_nano over the user's open requests
--   (open = in_flight, awaiting_cost, unresolved: a request whose cost is not yet known).
-- A request keeps hold_nano after it closes, as a record of what was held.

alter table users add column held_nano bigint not null default 0;
alter table users add constraint users_held_nano_nonnegative check (held_nano >= 0);

alter table requests add column hold_nano bigint not null default 0;
alter table requests add constraint requests_hold_nano_nonnegative check (hold_nano >= 0);
-- The completion budget the hold was computed with (sent upstream in reserve mode when the
-- client gave none); null when the hold is a fallback for an unpriced model.
alter table requests add column hold_completion_tokens integer;
-- Who closed an unresolved request by hand, and why (admin settle / void).
alter table requests add column resolution_note text;

-- 'voided': an operator closed the request without a charge (POST /admin/requests/:id/void).
alter table requests drop constraint requests_state_check;
alter table requests add constraint requests_state_check
  check (state in ('in_flight', 'awaiting_cost', 'settled', 'failed', 'unresolved', 'voided'));

-- Open requests per user: the "can this user possibly afford a call" pre-check before queuing
-- (sums the holds of calls in flight) and verify's held_nano check.
create index requests_open_user on requests (user_id)
  where state in ('in_flight', 'awaiting_cost', 'unresolved');

-- The reconciler now also retries unresolved requests that have a generation id (their
-- next_lookup_at is set; null means nothing to look up). One partial index serves the claim.
create index requests_reconcile on requests (next_lookup_at nulls first)
  where state in ('in_flight', 'awaiting_cost', 'unresolved');
drop index requests_open;

-- The settle statement reads the default multiplier from this one row; a missing row would
-- price nothing. The row can be updated, never removed.
create function pricing_settings_keep() returns trigger
language plpgsql as $$
begin
  raise exception 'pricing_settings must keep its one row (% refused)', tg_op
    using errcode = 'MGP01';
end;
$$;
create trigger pricing_settings_keep_row
  before delete on pricing_settings
  for each row execute function pricing_settings_keep();
create trigger pricing_settings_keep_table
  before truncate on pricing_settings
  for each statement execute function pricing_settings_keep();

-- The price book: per-model prices from upstream GET /models, shared by all replicas. Prices
-- are exact integers in atto-USD (1e-18 USD) per unit: OpenRouter prices can be below one
-- nano-USD per token, and a hold is rounded up from these only at the end. numeric(38,0)
-- because a per-request or per-image price could exceed bigint's 9.2 USD in atto-USD.
create table model_prices (
  model_id text primary key check (length(model_id) between 1 and 256),
  prompt_atto numeric(38, 0) not null check (prompt_atto >= 0),
  completion_atto numeric(38, 0) not null check (completion_atto >= 0),
  request_atto numeric(38, 0) not null default 0 check (request_atto >= 0),
  image_atto numeric(38, 0) not null default 0 check (image_atto >= 0),
  web_search_atto numeric(38, 0) not null default 0 check (web_search_atto >= 0),
  internal_reasoning_atto numeric(38, 0) not null default 0 check (internal_reasoning_atto >= 0),
  input_cache_read_atto numeric(38, 0) not null default 0 check (input_cache_read_atto >= 0),
  input_cache_write_atto numeric(38, 0) not null default 0 check (input_cache_write_atto >= 0),
  context_length integer check (context_length > 0),
  max_completion_tokens integer check (max_completion_tokens > 0),
  -- 'upstream': refreshed from /models; 'operator': pinned by an operator, never overwritten
  -- by a refresh (and kept when upstream drops the model).
  source text not null check (source in ('upstream', 'operator')),
  note text,
  updated_at timestamptz not null default now()
);

-- One row: when the book was last refreshed from upstream, and who is refreshing it now, so
-- N replicas do not all fetch /models at once.
create table price_book_state (
  singleton boolean primary key default true check (singleton),
  refreshed_at timestamptz,
  refreshing_until timestamptz,
  last_error text
);
insert into price_book_state default values;
