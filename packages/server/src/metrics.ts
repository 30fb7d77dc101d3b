import client from 'prom-client';

/** Seconds buckets from 1 ms to ~100 s: proxy overhead is sub-ms, streams last minutes. */
const SECONDS_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

export interface Gauges {
  queueDepth: () => number;
  pinnedClients: () => number;
  poolClients: () => Array<{ pool: string; state: string; value: number }>;
  /** From a background snapshot (unsettled-gauges.ts): a scrape runs no query. */
  unsettled: () => Array<{ state: string; count: number; oldestAgeS: number; heldNano: bigint }>;
  priceBookModels: () => number;
}

/** Every metric the proxy exports, in base units (seconds, nano-USD, counts). */
export function createMetrics(gauges: Gauges) {
  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry });
  const m = {
    registry,
    httpRequests: new client.Counter({ name: 'metergate_http_requests_total', help: 'HTTP requests by route and status', labelNames: ['route', 'method', 'status'], registers: [registry] }),
    httpDuration: new client.Histogram({ name: 'metergate_http_request_duration_seconds', help: 'Time from request to response end', labelNames: ['route'], buckets: SECONDS_BUCKETS, registers: [registry] }),
    upstreamDuration: new client.Histogram({ name: 'metergate_upstream_duration_seconds', help: 'Upstream call duration, headers to last byte', labelNames: ['stream'], buckets: SECONDS_BUCKETS, registers: [registry] }),
    upstreamTtfb: new client.Histogram({ name: 'metergate_upstream_ttfb_seconds', help: 'Upstream time to first byte of the body', labelNames: ['stream'], buckets: SECONDS_BUCKETS, registers: [registry] }),
    upstreamErrors: new client.Counter({ name: 'metergate_upstream_errors_total', help: 'Upstream failures by kind', labelNames: ['kind'], registers: [registry] }),
    // Alert on any increase: the operator's OpenRouter key limit or credits ran out, and every
    // call fails until the operator acts (retrying does not help).
    upstreamAccountLimit: new client.Counter({ name: 'metergate_upstream_account_limit_total', help: "Upstream 402s from the operator's key limit or credits, by error.metadata.limit_source ('none' when absent)", labelNames: ['limit_source'], registers: [registry] }),
    lockWait: new client.Histogram({ name: 'metergate_lock_wait_seconds', help: 'Wait for the per-user advisory lock in Postgres', buckets: SECONDS_BUCKETS, registers: [registry] }),
    barrierBusy: new client.Counter({ name: 'metergate_barrier_busy_total', help: 'Calls turned away with 503 because the cost barrier could not be had', labelNames: ['reason'], registers: [registry] }),
    holderLost: new client.Counter({ name: 'metergate_lock_holder_lost_total', help: 'Lock holders whose session ended before COMMIT (cost is saved separately)', registers: [registry] }),
    costRecorded: new client.Counter({ name: 'metergate_cost_recorded_nano_total', help: 'Upstream cost recorded in the ledger, nano-USD', registers: [registry] }),
    charged: new client.Counter({ name: 'metergate_charged_nano_total', help: 'Amount charged to users in the ledger, nano-USD', registers: [registry] }),
    settles: new client.Counter({ name: 'metergate_settles_total', help: 'Settle attempts by outcome', labelNames: ['outcome'], registers: [registry] }),
    costLookups: new client.Counter({ name: 'metergate_cost_lookups_total', help: 'Generation cost lookups by outcome', labelNames: ['outcome'], registers: [registry] }),
    reconcilerRuns: new client.Counter({ name: 'metergate_reconciler_runs_total', help: 'Reconciler passes by outcome (ok: the pass completed; failed: it could not reach the database)', labelNames: ['outcome'], registers: [registry] }),
    reconcilerOutcomes: new client.Counter({ name: 'metergate_reconciler_requests_total', help: 'Requests the reconciler handled, by outcome', labelNames: ['outcome'], registers: [registry] }),
    heartbeats: new client.Counter({ name: 'metergate_heartbeats_total', help: 'Replica heartbeat writes by outcome', labelNames: ['outcome'], registers: [registry] }),
    statementBatchSize: new client.Histogram({ name: 'metergate_statement_batch_size', help: 'Items per batched write statement (admission: users; settle: requests; generation_id: streams)', labelNames: ['kind'], buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256], registers: [registry] }),
    statementBatchFailures: new client.Counter({ name: 'metergate_statement_batch_failures_total', help: 'Batched write statements that failed and were retried item by item', labelNames: ['kind'], registers: [registry] }),
    lockHold: new client.Histogram({ name: 'metergate_lock_hold_seconds', help: 'How long a call held its user\'s cost lock (serialize: the whole call; reserve: the admission statement)', labelNames: ['mode'], buckets: SECONDS_BUCKETS, registers: [registry] }),
    admissions: new client.Counter({ name: 'metergate_admissions_total', help: 'Admission decisions by barrier mode and outcome', labelNames: ['mode', 'outcome'], registers: [registry] }),
    holdOverages: new client.Counter({ name: 'metergate_hold_overages_total', help: 'Settles whose charge exceeded the call\'s hold (charged in full)', registers: [registry] }),
    holdOverage: new client.Counter({ name: 'metergate_hold_overage_nano_total', help: 'Charged beyond the hold, nano-USD', registers: [registry] }),
    retryPending: new client.Gauge({ name: 'metergate_retry_pending', help: 'Database writes waiting for an in-memory retry, by queue (settle, idempotency_key, hand_off)', labelNames: ['queue'], registers: [registry] }),
    retryGivenUp: new client.Counter({ name: 'metergate_retry_given_up_total', help: 'In-memory retries and background lookups given up and handed to the reconciler, by queue and reason (attempts, permanent, full)', labelNames: ['queue', 'reason'], registers: [registry] }),
    costLookupsRunning: new client.Gauge({ name: 'metergate_cost_lookups_running', help: 'Background generation lookups running in this process', registers: [registry] }),
    clientWriteStalls: new client.Counter({ name: 'metergate_client_write_stalls_total', help: 'Streams cut because the client read nothing for CLIENT_WRITE_STALL_MS_MAX', registers: [registry] }),
    reconcilerJudging: new client.Gauge({ name: 'metergate_reconciler_judging_heartbeats', help: '1 while this replica takes owners with a stale heartbeat for dead (its own beats have landed unbroken for a lease), else 0', registers: [registry] }),
    idempotency: new client.Counter({ name: 'metergate_idempotency_total', help: 'Idempotency-Key handling by outcome', labelNames: ['outcome'], registers: [registry] }),
  };
  registerGauges(registry, gauges);
  return m;
}

export type Metrics = ReturnType<typeof createMetrics>;

/** Gauges computed at scrape time from the replica's state (no query per scrape). */
function registerGauges(registry: client.Registry, gauges: Gauges): void {
  new client.Gauge({ name: 'metergate_barrier_queue_depth', help: 'Callers waiting in this process behind a same-user call', registers: [registry], collect() { this.set(gauges.queueDepth()); } });
  new client.Gauge({ name: 'metergate_pool_clients_pinned', help: 'Lock-holder clients pinned by active users', registers: [registry], collect() { this.set(gauges.pinnedClients()); } });
  new client.Gauge({
    name: 'metergate_pool_clients', help: 'Database pool clients by pool and state', labelNames: ['pool', 'state'], registers: [registry],
    collect() { for (const { pool, state, value } of gauges.poolClients()) this.set({ pool, state }, value); },
  });
  // No query per scrape: the rows come from a snapshot refreshed in the background every
  // METRICS_REFRESH_MS. The count gauge (registered, so collected, first) also notes the
  // oldest age for the gauge after it.
  let oldestAgeS = 0;
  let oldestByState: Array<{ state: string; oldestAgeS: number; heldNano: bigint }> = [];
  new client.Gauge({
    name: 'metergate_unsettled_requests', help: 'Requests not yet settled, by state (whole database)', labelNames: ['state'], registers: [registry],
    collect() {
      this.reset();
      oldestAgeS = 0;
      // While the database is away the snapshot is empty, and so are these gauges.
      const rows = gauges.unsettled();
      oldestByState = rows;
      for (const row of rows) {
        this.set({ state: row.state }, row.count);
        oldestAgeS = Math.max(oldestAgeS, row.oldestAgeS);
      }
    },
  });
  new client.Gauge({ name: 'metergate_unsettled_oldest_age_seconds', help: 'Age of the oldest unsettled request (whole database)', registers: [registry], collect() { this.set(oldestAgeS); } });
  // By state too: one old `unresolved` request (waiting for an operator) must not hide a stuck
  // in_flight one from an alert.
  new client.Gauge({
    name: 'metergate_unsettled_state_oldest_age_seconds', help: 'Age of the oldest unsettled request in each state (whole database)', labelNames: ['state'], registers: [registry],
    collect() { this.reset(); for (const row of oldestByState) this.set({ state: row.state }, row.oldestAgeS); },
  });
  new client.Gauge({
    name: 'metergate_held_nano', help: 'Holds kept by open requests, by state, charged nano-USD (whole database)', labelNames: ['state'], registers: [registry],
    collect() { this.reset(); for (const row of oldestByState) this.set({ state: row.state }, Number(row.heldNano)); },
  });
  new client.Gauge({ name: 'metergate_price_book_models', help: 'Models with a known price in this replica\'s price book', registers: [registry], collect() { this.set(gauges.priceBookModels()); } });
}
