-- Crash safety and idempotency (issue 3).

-- The reconciler claims open requests by next_lookup_at (requests_open, from 0001) and joins
-- the owner's heartbeat; operators list what it could not settle by state and reason.
create index requests_unresolved on requests (reason, started_at desc) where state = 'unresolved';

-- Idempotency-Key on chat completions, per user (Stripe / IETF draft semantics). A row is
-- inserted before the cost barrier (state running) and either completed with the response to
-- replay (state done) or deleted when the attempt ended before anything could be charged.
create table idempotency_keys (
  user_id text not null references users (id),
  key text not null check (length(key) between 1 and 255),
  -- sha256 of the canonical JSON body: a retry with another body is refused (422).
  body_hash bytea not null check (length(body_hash) = 32),
  -- The Metergate request (requests.id) of the attempt that owns the key.
  request_id uuid not null,
  replica_id text not null,
  stream boolean not null,
  state text not null check (state in ('running', 'done')),
  response_status integer,
  -- Only the headers that describe the body (content-type, x-generation-id, ...).
  response_headers jsonb,
  response_body bytea,
  created_at timestamptz not null default now(),
  completed_at timestamptz,
  expires_at timestamptz not null,
  primary key (user_id, key),
  check ((state = 'done') = (response_status is not null and response_body is not null)),
  check (expires_at >= created_at + interval '24 hours')
);
create index idempotency_keys_expires on idempotency_keys (expires_at);
create index idempotency_keys_running on idempotency_keys (created_at) where state = 'running';
create index idempotency_keys_request on idempotency_keys (request_id);
