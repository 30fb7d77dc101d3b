-- Rollup indexes that answer the reports without visiting the tables (issue 5).
--
-- Top users over a range (packages/db/src/sql/top-users.ts) probe the per-user rollups once
-- per candidate and read the range's edge hours from usage_hourly by bucket. Through the old
-- indexes each of those read the table row as well: on a cold cache (Postgres restarted, OS
-- cache dropped; the 10M-row benchmark seed) a 7-day top-100 spent ~200 ms in those random
-- table reads. With every measure in the index, probes and edge reads are index-only scans
-- (once vacuum has marked the pages all-visible, which it does for every closed period).
--
-- The primary keys keep their columns and names (the settle statement's ON CONFLICT targets
-- infer them) and gain INCLUDE columns; no index is added on balance, so a settle writes as
-- many index entries as before, only wider ones.
--
-- Cost: each index is built under a lock that holds off settles (measured on the benchmark
-- seed: usage_user_daily, 8.7M rows, 11 s). On a database that large an operator may build
-- the *_covering indexes beforehand with CREATE [UNIQUE] INDEX CONCURRENTLY under the same
-- names and definitions: the IF NOT EXISTS below then skips the build and only swaps.
set local maintenance_work_mem = '256MB';

create unique index if not exists usage_user_daily_covering on usage_user_daily (user_id, bucket)
  include (requests, prompt_tokens, completion_tokens, upstream_cost_nano, charged_nano);
alter table usage_user_daily drop constraint usage_user_daily_pkey,
  add constraint usage_user_daily_pkey primary key using index usage_user_daily_covering;

create unique index if not exists usage_user_weekly_covering on usage_user_weekly (user_id, bucket)
  include (requests, prompt_tokens, completion_tokens, upstream_cost_nano, charged_nano);
alter table usage_user_weekly drop constraint usage_user_weekly_pkey,
  add constraint usage_user_weekly_pkey primary key using index usage_user_weekly_covering;

create unique index if not exists usage_user_monthly_covering on usage_user_monthly (user_id, bucket)
  include (requests, prompt_tokens, completion_tokens, upstream_cost_nano, charged_nano);
alter table usage_user_monthly drop constraint usage_user_monthly_pkey,
  add constraint usage_user_monthly_pkey primary key using index usage_user_monthly_covering;

-- Edge hours of every user by bucket, every measure (was: user_id and charged_nano only).
create index if not exists usage_hourly_bucket_covering on usage_hourly (bucket)
  include (user_id, requests, prompt_tokens, completion_tokens, upstream_cost_nano, charged_nano);
drop index usage_hourly_bucket;
alter index usage_hourly_bucket_covering rename to usage_hourly_bucket;
