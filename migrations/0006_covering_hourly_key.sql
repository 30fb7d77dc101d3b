-- The (hour, user, model) rollup's primary key carries every measure, like the per-user keys
-- in 0005 (issue 5). Summaries of one user, or of one model's users, read only this rollup and
-- probe it per user; through the old key every probe also read the table row. Measured cold
-- (Postgres restarted, OS cache dropped; 10M-row seed) before this: top users of one model over
-- 7 days p95 119 ms, one heavy user by day over 90 days p95 76 ms — the winners' hourly rows
-- read one table page each.
-- Same shape and cost notes as 0005: the key keeps its columns and name; the build holds off
-- settles while it runs (an operator may build usage_hourly_covering CONCURRENTLY beforehand).
set local maintenance_work_mem = '256MB';

create unique index if not exists usage_hourly_covering on usage_hourly (user_id, bucket, model)
  include (requests, prompt_tokens, completion_tokens, upstream_cost_nano, charged_nano);
alter table usage_hourly drop constraint usage_hourly_pkey,
  add constraint usage_hourly_pkey primary key using index usage_hourly_covering;
