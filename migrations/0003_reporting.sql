-- Reporting and pricing (issue 5): resale multipliers applied inside the settle statement,
-- usage rollups kept exact in that same statement, and the indexes the admin query API
-- (packages/db/src/sql/reports.ts) relies on. The query plans read at 10M ledger rows are in
-- the comment at the top of reports.ts.

-- ---------------------------------------------------------------------------------------
-- Pricing. Multipliers are integers in parts per million (1000000 = ×1.0), so pricing is
-- exact integer arithmetic. Rounding rule, the only one pricing adds:
--   charged_nano = ceil(upstream_cost_nano × multiplier_ppm / 1000000)
-- i.e. rounded UP to the next nano-USD: the operator never undercharges by a fraction.
-- The default lives in a one-row table (not in each replica's environment) so every replica
-- prices with the same value from the moment it is changed; a user may override it.
create table pricing_settings (
  singleton boolean primary key default true check (singleton),
  default_multiplier_ppm bigint not null default 1000000
    check (default_multiplier_ppm between 1 and 1000000000),
  updated_at timestamptz not null default now()
);
insert into pricing_settings default values;

-- Null: the user pays the default multiplier.
alter table users add column multiplier_ppm bigint
  check (multiplier_ppm between 1 and 1000000000);

-- The multiplier a usage entry was priced with, for disputes (null on entries written before
-- this migration, which were charged the upstream cost, and on grants and adjustments).
alter table ledger_entries add column multiplier_ppm bigint;

-- ---------------------------------------------------------------------------------------
-- Usage rollups. Each settle (packages/db/src/sql/ledger.ts, settleUsage) adds its entry to
-- every table below in the same statement that writes the ledger row, so the rollups are
-- exactly the sums of the usage entries, never an estimate. Buckets are UTC.
-- Columns of every rollup: requests, prompt/completion tokens, what the upstream billed and
-- what the user was charged (the margin is charged - upstream). model '' = no model named.
-- No foreign keys: rollups are derived data and the settle already locks the user's row.

-- Per (hour, user, model): the finest rollup; per-user reports and short ranges. Keyed by user
-- first, so a user's (or a few users') rows are one index range; by bucket and by model for
-- the other readers, both covering (user_id, charged_nano) so ranking users over hours reads
-- the index only (measured at 10M rows: top users of one model over 7 days 370 ms -> 36 ms).
-- The price: an update of an hourly row changes an indexed column, so it is never HOT.
create table usage_hourly (
  user_id text not null,
  bucket timestamptz not null,
  model text not null,
  requests bigint not null,
  prompt_tokens bigint not null,
  completion_tokens bigint not null,
  upstream_cost_nano bigint not null,
  charged_nano bigint not null,
  primary key (user_id, bucket, model)
);
create index usage_hourly_bucket on usage_hourly (bucket) include (user_id, charged_nano);
create index usage_hourly_model on usage_hourly (model, bucket) include (user_id, charged_nano);

-- Per (day, user) and (month, user): top users over long ranges read one row per user and
-- period. Keyed by user first (the winners' sums are index lookups), and indexed by
-- (bucket, charged desc, user_id): one whole day's or month's top users straight off the index.
create table usage_user_daily (
  user_id text not null,
  bucket timestamptz not null,
  requests bigint not null,
  prompt_tokens bigint not null,
  completion_tokens bigint not null,
  upstream_cost_nano bigint not null,
  charged_nano bigint not null,
  primary key (user_id, bucket)
);
create index usage_user_daily_top on usage_user_daily (bucket, charged_nano desc, user_id);
create table usage_user_monthly (like usage_user_daily including all);

-- Per user, all time (users.usage_nano is its charged_nano).
create table usage_user_totals (
  user_id text primary key,
  requests bigint not null,
  prompt_tokens bigint not null,
  completion_tokens bigint not null,
  upstream_cost_nano bigint not null,
  charged_nano bigint not null
);

-- Per (hour, model) and (day, model), striped over 8 shards by user (hashtext(user_id) & 7):
-- an unstriped row per model and hour would be a hot row that every settle of that model, of
-- every user, must lock in turn. Reads sum the shards; which shard a row lands in never
-- matters for correctness, only for spreading the locks.
create table usage_model_hourly (
  bucket timestamptz not null,
  model text not null,
  shard smallint not null check (shard between 0 and 7),
  requests bigint not null,
  prompt_tokens bigint not null,
  completion_tokens bigint not null,
  upstream_cost_nano bigint not null,
  charged_nano bigint not null,
  primary key (bucket, model, shard)
);
create table usage_model_daily (like usage_model_hourly including all);

-- sum() over bigint keeps a numeric state per group; this one adds in bigint (int8pl raises
-- on overflow, so a sum is exact or an error, never wrapped). Ranking 76k users over 157k
-- rollup rows: 97 ms with sum(), 73 ms with this.
create aggregate usage_sum(bigint) (
  sfunc = int8pl, stype = bigint, initcond = '0', combinefunc = int8pl, parallel = safe
);

-- Adds the usage entries with from_id <= id <= to_id to every rollup (the bulk twin of the
-- per-row upserts in settleUsage). Used by the backfill below, by scripts/seed-ledger.mjs,
-- and by usage_rollups_rebuild(). Returns the number of (hour, user, model) groups added.
create function usage_rollups_add(from_id bigint, to_id bigint) returns bigint
language sql as $$
  with usage as materialized (
    select user_id, date_trunc('hour', created_at, 'UTC') as bucket, coalesce(model, '') as model,
           count(*)::bigint as requests,
           coalesce(sum(prompt_tokens), 0)::bigint as prompt_tokens,
           coalesce(sum(completion_tokens), 0)::bigint as completion_tokens,
           sum(coalesce(upstream_cost_nano, -amount_nano))::bigint as upstream_cost_nano,
           sum(-amount_nano)::bigint as charged_nano
      from ledger_entries
     where kind = 'usage' and id between from_id and to_id
     group by 1, 2, 3),
  hourly as (
    insert into usage_hourly as t
    select * from usage
    on conflict (user_id, bucket, model) do update
       set requests = t.requests + excluded.requests, prompt_tokens = t.prompt_tokens + excluded.prompt_tokens,
           completion_tokens = t.completion_tokens + excluded.completion_tokens,
           upstream_cost_nano = t.upstream_cost_nano + excluded.upstream_cost_nano,
           charged_nano = t.charged_nano + excluded.charged_nano),
  user_daily as (
    insert into usage_user_daily as t
    select user_id, date_trunc('day', bucket, 'UTC'), sum(requests)::bigint, sum(prompt_tokens)::bigint,
           sum(completion_tokens)::bigint, sum(upstream_cost_nano)::bigint, sum(charged_nano)::bigint
      from usage group by 1, 2
    on conflict (user_id, bucket) do update
       set requests = t.requests + excluded.requests, prompt_tokens = t.prompt_tokens + excluded.prompt_tokens,
           completion_tokens = t.completion_tokens + excluded.completion_tokens,
           upstream_cost_nano = t.upstream_cost_nano + excluded.upstream_cost_nano,
           charged_nano = t.charged_nano + excluded.charged_nano),
  user_monthly as (
    insert into usage_user_monthly as t
    select user_id, date_trunc('month', bucket, 'UTC'), sum(requests)::bigint, sum(prompt_tokens)::bigint,
           sum(completion_tokens)::bigint, sum(upstream_cost_nano)::bigint, sum(charged_nano)::bigint
      from usage group by 1, 2
    on conflict (user_id, bucket) do update
       set requests = t.requests + excluded.requests, prompt_tokens = t.prompt_tokens + excluded.prompt_tokens,
           completion_tokens = t.completion_tokens + excluded.completion_tokens,
           upstream_cost_nano = t.upstream_cost_nano + excluded.upstream_cost_nano,
           charged_nano = t.charged_nano + excluded.charged_nano),
  user_totals as (
    insert into usage_user_totals as t
    select user_id, sum(requests)::bigint, sum(prompt_tokens)::bigint,
           sum(completion_tokens)::bigint, sum(upstream_cost_nano)::bigint, sum(charged_nano)::bigint
      from usage group by 1
    on conflict (user_id) do update
       set requests = t.requests + excluded.requests, prompt_tokens = t.prompt_tokens + excluded.prompt_tokens,
           completion_tokens = t.completion_tokens + excluded.completion_tokens,
           upstream_cost_nano = t.upstream_cost_nano + excluded.upstream_cost_nano,
           charged_nano = t.charged_nano + excluded.charged_nano),
  model_hourly as (
    insert into usage_model_hourly as t
    select bucket, model, (hashtext(user_id) & 7)::smallint, sum(requests)::bigint, sum(prompt_tokens)::bigint,
           sum(completion_tokens)::bigint, sum(upstream_cost_nano)::bigint, sum(charged_nano)::bigint
      from usage group by 1, 2, 3
    on conflict (bucket, model, shard) do update
       set requests = t.requests + excluded.requests, prompt_tokens = t.prompt_tokens + excluded.prompt_tokens,
           completion_tokens = t.completion_tokens + excluded.completion_tokens,
           upstream_cost_nano = t.upstream_cost_nano + excluded.upstream_cost_nano,
           charged_nano = t.charged_nano + excluded.charged_nano),
  model_daily as (
    insert into usage_model_daily as t
    select date_trunc('day', bucket, 'UTC'), model, (hashtext(user_id) & 7)::smallint, sum(requests)::bigint,
           sum(prompt_tokens)::bigint, sum(completion_tokens)::bigint, sum(upstream_cost_nano)::bigint,
           sum(charged_nano)::bigint
      from usage group by 1, 2, 3
    on conflict (bucket, model, shard) do update
       set requests = t.requests + excluded.requests, prompt_tokens = t.prompt_tokens + excluded.prompt_tokens,
           completion_tokens = t.completion_tokens + excluded.completion_tokens,
           upstream_cost_nano = t.upstream_cost_nano + excluded.upstream_cost_nano,
           charged_nano = t.charged_nano + excluded.charged_nano)
  select count(*) from usage;
$$;

-- Rebuilds every rollup from the ledger (for an operator who finds them off, e.g. after a
-- replica running pre-0003 code settled usage without them). Takes the tables' locks so no
-- settle interleaves.
create function usage_rollups_rebuild() returns bigint
language plpgsql as $$
begin
  lock table usage_hourly, usage_user_daily, usage_user_monthly, usage_user_totals,
             usage_model_hourly, usage_model_daily in exclusive mode;
  truncate usage_hourly, usage_user_daily, usage_user_monthly, usage_user_totals,
           usage_model_hourly, usage_model_daily;
  return usage_rollups_add(0, (select coalesce(max(id), 0) from ledger_entries));
end;
$$;

-- Backfill from the usage already in the ledger.
select usage_rollups_add(0, (select coalesce(max(id), 0) from ledger_entries));

-- ---------------------------------------------------------------------------------------
-- Indexes for the query API. The ledger reads newest first as (created_at desc, id desc) —
-- time order, with the id only breaking ties — so every filter below scans one index range
-- backwards and stops at the page size, however old the `until` bound is.
create index ledger_entries_user_time on ledger_entries (user_id, created_at, id);
create index ledger_entries_model_time on ledger_entries (model, created_at, id);
create index ledger_entries_kind_time on ledger_entries (kind, created_at, id);
-- (user_id, id desc) from 0001 is covered by ledger_entries_user_time; one index fewer to
-- maintain on every ledger insert.
drop index ledger_entries_user_id;

-- Users by balance ("running low") and by spend, keyset-paged either way.
create index users_balance on users (balance_nano, id);
create index users_spend on users (usage_nano, id);

-- Requests newest first (started_at desc, id desc) when not narrowed by user or by an
-- unsettled state (those use requests_user and requests_state from 0001).
create index requests_started on requests (started_at, id);
