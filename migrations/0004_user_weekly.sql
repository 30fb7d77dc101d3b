-- Per (ISO week, user) usage: bounds for ranking top users over ranges that are not whole
-- days or months (issue 5). A range of a few weeks lies inside at most a handful of weeks,
-- and a user's spend in the range is at most their spend in those weeks (usage charges are
-- never negative: ledger_entries' check on kind = 'usage'). Reading each covering week's top
-- users off the (bucket, charged_nano desc, user_id) index bounds everyone not yet read, so
-- the exact sums are needed for a few hundred candidates instead of every active user
-- (packages/db/src/sql/top-users.ts has the algorithm and the measured plans).
-- Weeks are ISO weeks in UTC: they start on Monday 00:00 UTC, date_trunc('week', t, 'UTC').
-- Kept like every rollup: settleUsage upserts it in the settle statement, usage_rollups_add
-- (replaced below) in bulk.
create table usage_user_weekly (
  user_id text not null,
  bucket timestamptz not null,
  requests bigint not null,
  prompt_tokens bigint not null,
  completion_tokens bigint not null,
  upstream_cost_nano bigint not null,
  charged_nano bigint not null
);

-- Backfill from the per-day rollup, which is exact, and whose days partition the weeks. The
-- share lock holds off settles (they upsert usage_user_daily) until this migration commits, so
-- none lands between this read and the commit without reaching the weekly rows.
lock table usage_user_daily in share mode;
insert into usage_user_weekly
select user_id, date_trunc('week', bucket, 'UTC'), sum(requests)::bigint, sum(prompt_tokens)::bigint,
       sum(completion_tokens)::bigint, sum(upstream_cost_nano)::bigint, sum(charged_nano)::bigint
  from usage_user_daily
 group by 1, 2;

-- Indexes after the load (one sort each instead of a row-by-row build).
alter table usage_user_weekly add primary key (user_id, bucket);
create index usage_user_weekly_top on usage_user_weekly (bucket, charged_nano desc, user_id);
analyze usage_user_weekly;

-- usage_rollups_add from 0003, with the weekly rollup added (same shape as the others).
create or replace function usage_rollups_add(from_id bigint, to_id bigint) returns bigint
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
  user_weekly as (
    insert into usage_user_weekly as t
    select user_id, date_trunc('week', bucket, 'UTC'), sum(requests)::bigint, sum(prompt_tokens)::bigint,
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

-- usage_rollups_rebuild from 0003, with the weekly rollup added.
create or replace function usage_rollups_rebuild() returns bigint
language plpgsql as $$
begin
  lock table usage_hourly, usage_user_daily, usage_user_weekly, usage_user_monthly, usage_user_totals,
             usage_model_hourly, usage_model_daily in exclusive mode;
  truncate usage_hourly, usage_user_daily, usage_user_weekly, usage_user_monthly, usage_user_totals,
           usage_model_hourly, usage_model_daily;
  return usage_rollups_add(0, (select coalesce(max(id), 0) from ledger_entries));
end;
$$;
