-- Every OpenRouter endpoint metered (issue 12): which endpoint a call went to, and the token
-- details its usage reported.
--
-- requests.endpoint is written at admission ('chat', 'responses', 'messages', 'completions',
-- 'embeddings'); rows admitted before 0009 were all chat completions, hence the default. The
-- settle statement copies it to the call's usage entry, so reports can group by it without a
-- join. cached / cache-write / reasoning tokens come from the response's usage (NULL when it
-- did not say, and on entries settled from /generation, which does not report them).
--
-- A constant default and nullable columns: catalogue-only changes, no table rewrite; the
-- append-only trigger is not involved (no UPDATE of existing ledger rows).
alter table requests
  add column endpoint text not null default 'chat';

alter table ledger_entries
  add column endpoint text,
  add column cached_tokens integer,
  add column cache_write_tokens integer,
  add column reasoning_tokens integer;
