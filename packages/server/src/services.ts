import type { CostBarrier, Pools } from '@metergate/db';
import type { CostLookup } from './billing/cost-lookup.js';
import type { Settler } from './billing/settler.js';
import type { AdmissionStatements } from './holds/admission-statements.js';
import type { GenerationIdBatcher } from './billing/generation-ids.js';
import type { KeyCache } from './auth/key-cache.js';
import type { KeyWriter } from './idempotency/key-writer.js';
import type { Heartbeat } from './reconcile/heartbeat.js';
import type { Reconciler } from './reconcile/reconciler.js';
import type { UnsettledGauges } from './unsettled-gauges.js';
import type { Config } from './config.js';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';
import type { Migration } from '@metergate/db';
import type { OpenRouterClient } from './upstream/openrouter.js';
import type { PriceBook } from './holds/price-book.js';
import type { AdmissionBatcher } from './holds/admission-batcher.js';
import type { WebhookDeliverer } from './webhooks/deliverer.js';

/** Everything a route needs, built once by the runtime and passed down explicitly. */
export interface Services {
  readonly config: Config;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly pools: Pools;
  readonly barrier: CostBarrier;
  readonly upstream: OpenRouterClient;
  readonly settler: Settler;
  /** Admission statements, several users' per statement when they arrive together. */
  readonly admissionStatements: AdmissionStatements;
  /** Streams' generation ids, batched (billing/generation-ids.ts). */
  readonly generationIds: GenerationIdBatcher;
  readonly keyCache: KeyCache;
  readonly costLookup: CostLookup;
  /** Model prices for worst-case holds (shared through Postgres, kept in memory). */
  readonly priceBook: PriceBook;
  /** Reserve mode's per-user admission queue (one statement per user in flight, batched). */
  readonly admissions: AdmissionBatcher;
  /** Finishes idempotency keys (stored or released), retrying while the database is away. */
  readonly idempotencyWriter: KeyWriter;
  readonly heartbeat: Heartbeat;
  readonly reconciler: Reconciler;
  /** The database-wide gauges, refreshed by a timer rather than per scrape. */
  readonly unsettledGauges: UnsettledGauges;
  readonly migrations: readonly Migration[];
  /** Set while shutting down: readiness fails and new metered calls are refused. */
  readonly lifecycle: { draining: boolean; inFlight: number };
  /**
   * The controls' clock (spend-limit periods, rate windows): null means the database's now(),
   * one clock for every replica; tests inject one (RuntimeOptions.clock) to cross midnight.
   */
  readonly clock: () => Date | null;
  /** Delivers the webhook outbox (any replica claims due deliveries). */
  readonly webhooks: WebhookDeliverer;
}
