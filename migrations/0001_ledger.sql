-- Metergate's books. Money is integer nano-USD (1e-9 USD) in bigint: the cheapest listed
-- per-token price (2e-8 USD) is 20 nano, so nothing real rounds to zero, and bigint holds
-- ±9.2e9 USD.

create table users (
  id text primary key
    check (id ~ '^[A-Za-z0-9][A-Za-z0-9._@:+-]{0,127}$'),
  created_at timestamptz not null default now(),
  -- Running totals, written in the same statement as each ledger row, so a balance read is
  -- O(1) and balance_nano = credits_nano - usage_nano = sum(ledger_entries.amount_nano).
  balance_nano bigint not null default 0,
  credits_nano bigint not null default 0,
  usage_nano bigint not null default 0,
  check (balance_nano = credits_nano - usage_nano)
);

create table api_keys (
  id text primary key,
  user_id text not null references users (id),
  -- sha256 of the whole key; the key itself is shown once and never stored.
  key_hash bytea not null unique,
  created_at timestamptz not null default now(),
  revoked_at timestamptz
);
create index api_keys_user on api_keys (user_id);

-- Append-only: a trigger below refuses UPDATE and DELETE.
create table ledger_entries (
  id bigint generated always as identity primary key,
  user_id text not null references users (id),
  kind text not null check (kind in ('grant', 'usage', 'adjustment')),
  -- Signed: grants are positive, usage negative, adjustments either.
  amount_nano bigint not null,
  -- For usage: what the upstream billed; amount_nano = -charged (equal unless priced).
  upstream_cost_nano bigint,
  balance_after_nano bigint not null,
  -- One usage entry per request, enforced here rather than hoped for.
  request_id uuid unique,
  generation_id text,
  model text,
  prompt_tokens integer,
  completion_tokens integer,
  note text,
  created_at timestamptz not null default now(),
  check ((kind = 'usage') = (request_id is not null)),
  check (kind <> 'usage' or amount_nano <= 0),
  check (kind <> 'grant' or amount_nano > 0)
);
create index ledger_entries_user_id on ledger_entries (user_id, id desc);
create index ledger_entries_created_at on ledger_entries (created_at, id);

create function ledger_entries_append_only() returns trigger
language plpgsql as $$
begin
  raise exception 'ledger_entries is append-only (% refused)', tg_op
    using errcode = 'MGL01';
end;
$$;
create trigger ledger_entries_append_only
  before update or delete on ledger_entries
  for each row execute function ledger_entries_append_only();

-- Every upstream call leaves a row here, committed before it is forwarded, so a crash at
-- any point leaves something the reconciler can settle or report.
create table requests (
  id uuid primary key,
  user_id text not null references users (id),
  replica_id text not null,
  model text,
  stream boolean not null,
  state text not null
    check (state in ('in_flight', 'awaiting_cost', 'settled', 'failed', 'unresolved')),
  generation_id text,
  cost_nano bigint,
  reason text,
  lookup_attempts integer not null default 0,
  next_lookup_at timestamptz,
  started_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  settled_at timestamptz,
  check ((state = 'settled') = (settled_at is not null and cost_nano is not null))
);
create index requests_open on requests (next_lookup_at nulls first)
  where state in ('in_flight', 'awaiting_cost');
create index requests_user on requests (user_id, started_at desc);
create index requests_state on requests (state, started_at desc)
  where state <> 'settled';

-- Liveness of each replica: the reconciler treats requests of a replica whose heartbeat is
-- older than its lease as orphaned.
create table replicas (
  id text primary key,
  started_at timestamptz not null default now(),
  heartbeat_at timestamptz not null default now(),
  draining boolean not null default false
);
