/**
 * The only module that reads process.env: every setting is validated here, typed, given a
 * default, and frozen. Everything else receives a Config.
 */
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { z } from 'zod';
import { CodedError, MoneyFormatError, usdTextToNano } from '@metergate/db';

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

const int = (min: number, max: number, fallback: number) =>
  z.coerce.number().int().min(min).max(max).default(fallback);

const usdAmount = z.string().transform((text, ctx) => {
  try {
    return usdTextToNano(text);
  } catch (error) {
    if (!(error instanceof MoneyFormatError)) throw error;
    ctx.addIssue({ code: 'custom', message: 'must be a decimal USD amount like "0" or "0.50"' });
    return z.NEVER;
  }
});

const envSchema = z.object({
  NODE_ENV: z.enum(['production', 'development', 'test']).default('development'),
  PORT: int(0, 65535, 8080),
  HOST: z.string().min(1).default('0.0.0.0'),
  DATABASE_URL: z.string().url().optional(),
  MIGRATIONS_DATABASE_URL: z.string().url().optional(),
  EMBEDDED_PG_PORT: int(1024, 65535, 54329),
  EMBEDDED_PG_DIR: z.string().min(1).default('.data/postgres'),
  OPENROUTER_BASE_URL: z.string().url().default('https://openrouter.ai/api/v1'),
  OPENROUTER_API_KEY: z.string().min(1).optional(),
  ADMIN_TOKEN: z.string().min(16, 'ADMIN_TOKEN must be at least 16 characters').optional(),
  METRICS_TOKEN: z.string().min(16, 'METRICS_TOKEN must be at least 16 characters').optional(),
  METRICS_REFRESH_MS: int(100, 3_600_000, 5_000),
  READINESS_CACHE_MS: int(100, 60_000, 1_000),
  LOG_LEVEL: z.enum(LOG_LEVELS).default('info'),
  REPLICA_ID: z.string().min(1).max(128).optional(),
  MIN_BALANCE_USD: usdAmount.default(0n),
  BARRIER: z.enum(['serialize', 'reserve'], { message: 'must be "serialize" or "reserve"' }).default('serialize'),
  HOLD_FALLBACK_USD: usdAmount.default(1_000_000_000n),
  ADMISSION_QUEUE_DEPTH_MAX: int(1, 1_000_000, 4_096),
  PG_PREPARED_STATEMENTS: z.enum(['true', 'false'], { message: 'must be "true" or "false"' }).default('true'),
  PRICE_REFRESH_MS: int(1_000, 7 * 86_400_000, 600_000),
  PRICE_BOOK_RELOAD_MS: int(100, 3_600_000, 30_000),
  // Above 1e6 USD a charge at the largest multiplier (1000) could leave Postgres's bigint.
  CALL_COST_MAX_USD: usdAmount.default(1_000n * 1_000_000_000n)
    .refine((nano) => nano > 0n && nano <= 1_000_000n * 1_000_000_000n, 'must be above 0 and at most 1000000 (USD)'),
  LOCK_POOL_SIZE: int(1, 1000, 20),
  WRITE_POOL_SIZE: int(1, 1000, 10),
  ADMIN_POOL_SIZE: int(1, 1000, 4),
  WRITE_BATCH_MAX: int(1, 256, 64),
  // 1 measured best (bench, reserve, c=50; README Benchmark): fewer statements in flight, bigger batches.
  WRITE_BATCHES_IN_FLIGHT_MAX: int(1, 1000, 1),
  // libpq's session options (`-c name=value ...`); read here because the hot pools add their
  // plan mode to it (pools.ts), which would otherwise replace it.
  PGOPTIONS: z.string().max(4096).optional(),
  POOL_ACQUIRE_TIMEOUT_MS: int(10, 600_000, 5_000),
  LOCK_TIMEOUT_MS: int(10, 600_000, 10_000),
  BARRIER_QUEUE_WAIT_MS: int(10, 3_600_000, 30_000),
  BARRIER_QUEUE_DEPTH_MAX: int(1, 100_000, 64),
  STATEMENT_TIMEOUT_MS: int(100, 600_000, 10_000),
  UPSTREAM_TIMEOUT_MS: int(100, 3_600_000, 60_000),
  UPSTREAM_IDLE_TIMEOUT_MS: int(100, 3_600_000, 120_000),
  UPSTREAM_DURATION_MS_MAX: int(1_000, 3_600_000, 600_000),
  UPSTREAM_CONNECTIONS_MAX: int(1, 100_000, 256),
  CLIENT_WRITE_STALL_MS_MAX: int(100, 3_600_000, 60_000),
  BODY_BYTES_MAX: int(1_024, 100 * 1024 * 1024, 4 * 1024 * 1024),
  UPSTREAM_BODY_BYTES_MAX: int(1_024, 1024 * 1024 * 1024, 64 * 1024 * 1024),
  SETTLE_TIMEOUT_MS: int(100, 600_000, 5_000),
  COST_LOOKUP_ATTEMPTS_MAX: int(1, 100, 8),
  COST_LOOKUP_BACKOFF_MS: int(10, 600_000, 500),
  COST_LOOKUP_TASKS_MAX: int(1, 1_000_000, 1_000),
  RETRY_ENTRIES_MAX: int(1, 1_000_000, 10_000),
  RETRY_ATTEMPTS_MAX: int(1, 10_000, 20),
  MODELS_CACHE_MS: int(0, 86_400_000, 60_000),
  AUTH_CACHE_MS: int(0, 60_000, 5_000),
  AUTH_CACHE_ENTRIES_MAX: int(1, 10_000_000, 100_000),
  HEARTBEAT_INTERVAL_MS: int(50, 600_000, 2_000),
  REPLICA_LEASE_MS: int(200, 3_600_000, 10_000),
  RECONCILE_INTERVAL_MS: int(50, 3_600_000, 5_000),
  RECONCILE_BATCH_MAX: int(1, 10_000, 50),
  RECONCILE_CONCURRENCY: int(1, 64, 4),
  RECONCILE_BACKOFF_MS: int(10, 3_600_000, 1_000),
  RECONCILE_BACKOFF_MAX_MS: int(10, 86_400_000, 300_000),
  RECONCILE_ATTEMPTS_MAX: int(1, 10_000, 20),
  RECONCILE_AGE_MAX_MS: int(1_000, 7 * 86_400_000, 6 * 3_600_000),
  IDEMPOTENCY_TTL_HOURS: int(24, 24 * 365, 24),
  IDEMPOTENCY_STREAM_BYTES_MAX: int(1_024, 256 * 1024 * 1024, 1024 * 1024),
  SHUTDOWN_DEADLINE_MS: int(0, 3_600_000, 30_000),
  WEBHOOK_DELIVERY_INTERVAL_MS: int(50, 600_000, 1_000),
  WEBHOOK_TIMEOUT_MS: int(100, 300_000, 10_000),
  WEBHOOK_BATCH_MAX: int(1, 1_000, 20),
  WEBHOOK_ATTEMPTS_MAX: int(1, 10_000, 50),
  WEBHOOK_BACKOFF_MS: int(10, 3_600_000, 1_000),
  WEBHOOK_BACKOFF_MAX_MS: int(10, 86_400_000, 600_000),
});

export type LogLevel = (typeof LOG_LEVELS)[number];

export interface Config {
  readonly nodeEnv: 'production' | 'development' | 'test';
  readonly port: number;
  readonly host: string;
  /** Unset: start (or join) the embedded Postgres under embeddedPgDir. */
  readonly databaseUrl: string | null;
  /** A direct connection for migrations when DATABASE_URL goes through PgBouncer. */
  readonly migrationsDatabaseUrl: string | null;
  readonly embeddedPgPort: number;
  readonly embeddedPgDir: string;
  readonly openRouterBaseUrl: string;
  /** Unset: start the bundled OpenRouter simulator. */
  readonly openRouterApiKey: string | null;
  /** Unset: a random token is generated and printed at start-up. */
  readonly adminToken: string | null;
  /** Set: GET /metrics demands it (or the admin token) as a Bearer token. Unset: open. */
  readonly metricsToken: string | null;
  /** The database-wide gauges (unsettled requests) are refreshed in the background this often. */
  readonly metricsRefreshMs: number;
  /** GET /readyz reuses one database probe for this long (single-flight), however often called. */
  readonly readinessCacheMs: number;
  readonly logLevel: LogLevel;
  /** Webhooks: how often each replica claims due deliveries; one POST's time limit; rows per claim. */
  readonly webhookDeliveryIntervalMs: number;
  readonly webhookTimeoutMs: number;
  readonly webhookBatchMax: number;
  /** A delivery is given up ('failed', replayable) after this many attempts, backing off from WEBHOOK_BACKOFF_MS doubling up to WEBHOOK_BACKOFF_MAX_MS. */
  readonly webhookAttemptsMax: number;
  readonly webhookBackoffMs: number;
  readonly webhookBackoffMsMax: number;
  readonly replicaId: string;
  /** Admission floor: serialize admits while balance − held > this; reserve while balance − held − hold ≥ this. */
  readonly minBalanceNano: bigint;
  /**
   * serialize: the user's lock is held for the whole call (one call per user at a time);
   * reserve: only around admission, and each call's worst-case hold must fit the balance.
   */
  readonly barrierMode: 'serialize' | 'reserve';
  /** Serialize mode's hold (upstream USD, before the multiplier) for a call the price book cannot bound. */
  readonly holdFallbackNano: bigint;
  /** Hot statements as named prepared statements (off behind PgBouncer < 1.21 in transaction mode). */
  readonly pgPreparedStatements: boolean;
  /** Reserve mode: same-user admissions waiting in this process (each a few ms). */
  readonly admissionQueueDepthMax: number;
  /** The shared price book is refetched from upstream /models when older than this. */
  readonly priceRefreshMs: number;
  /** Each replica re-reads the shared price book this often. */
  readonly priceBookReloadMs: number;
  readonly lockPoolSize: number;
  readonly writePoolSize: number;
  /** Clients for operators' reports, exports and admin API calls (planned per query). */
  readonly adminPoolSize: number;
  /** Admissions (users), settles or streams' generation ids per statement on the write pool, at most (statement-batcher.ts). */
  readonly writeBatchMax: number;
  /** Such statements in flight at once per replica and kind; later ones wait and go out together. */
  readonly writeBatchesInFlightMax: number;
  /** Session options every database client starts with (PGOPTIONS), or undefined. */
  readonly pgOptions: string | undefined;
  readonly poolAcquireTimeoutMs: number;
  readonly lockTimeoutMs: number;
  readonly barrierQueueWaitMs: number;
  readonly barrierQueueDepthMax: number;
  readonly statementTimeoutMs: number;
  readonly upstreamTimeoutMs: number;
  readonly upstreamIdleTimeoutMs: number;
  readonly upstreamDurationMsMax: number;
  readonly upstreamConnectionsMax: number;
  /** A stream whose client reads nothing for this long is cut (upstream aborted, billed part settled). */
  readonly clientWriteStallMsMax: number;
  readonly bodyBytesMax: number;
  /** An upstream cost above this (or negative) is left unresolved for an operator, not charged. */
  readonly callCostMaxNano: bigint;
  readonly upstreamBodyBytesMax: number;
  readonly settleTimeoutMs: number;
  readonly costLookupAttemptsMax: number;
  readonly costLookupBackoffMs: number;
  /** Background generation lookups at once; more are handed to the reconciler at once. */
  readonly costLookupTasksMax: number;
  /** In-memory retries of settles and idempotency-key writes: entries per queue, attempts per entry. */
  readonly retryEntriesMax: number;
  readonly retryAttemptsMax: number;
  readonly modelsCacheMs: number;
  /** How long a key → user lookup is remembered (0 = never); bounds revocation delay elsewhere. */
  readonly authCacheMs: number;
  readonly authCacheEntriesMax: number;
  /** Each replica upserts its `replicas` row this often. */
  readonly heartbeatIntervalMs: number;
  /** A replica whose heartbeat is older than this is gone: others reconcile its requests. */
  readonly replicaLeaseMs: number;
  readonly reconcileIntervalMs: number;
  readonly reconcileBatchMax: number;
  /** Generation lookups one reconciler runs at once. */
  readonly reconcileConcurrency: number;
  /** Reconciler lookup backoff: base × 2^attempt, capped. */
  readonly reconcileBackoffMs: number;
  readonly reconcileBackoffMsMax: number;
  /** After this many reconciler lookups (or this age) a request ends `unresolved`. */
  readonly reconcileAttemptsMax: number;
  readonly reconcileAgeMsMax: number;
  /** Idempotency keys are kept at least this long (≥ 24 h, as Stripe and the IETF draft ask). */
  readonly idempotencyTtlHours: number;
  /** A stream kept for replay verbatim up to this size; larger ones as a compact equivalent. */
  readonly idempotencyStreamBytesMax: number;
  /** SIGTERM: how long in-flight streams get to finish before connections are cut. */
  readonly shutdownDeadlineMs: number;
}

export class ConfigError extends CodedError<'invalid_config'> {
  constructor(message: string) { super('invalid_config', message); }
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = envSchema.safeParse(blankToUndefined(env));
  if (!parsed.success) {
    const lines = parsed.error.issues.map((issue) => `  ${issue.path.join('.')}: ${issue.message}`);
    throw new ConfigError(`invalid configuration:\n${lines.join('\n')}`);
  }
  const e = parsed.data;
  if (e.NODE_ENV === 'production') {
    const missing = (['ADMIN_TOKEN', 'DATABASE_URL', 'OPENROUTER_API_KEY'] as const).filter((name) => e[name] === undefined);
    if (missing.length > 0) throw new ConfigError(`NODE_ENV=production needs ${missing.join(', ')}`);
  }
  // A lease shorter than two heartbeats would declare live replicas dead after one slow beat.
  if (e.REPLICA_LEASE_MS < 2 * e.HEARTBEAT_INTERVAL_MS) {
    throw new ConfigError('invalid configuration:\n  REPLICA_LEASE_MS: must be at least twice HEARTBEAT_INTERVAL_MS');
  }
  if (e.HOLD_FALLBACK_USD < 0n) {
    throw new ConfigError('invalid configuration:\n  HOLD_FALLBACK_USD: must not be negative');
  }
  if (e.WEBHOOK_BACKOFF_MAX_MS < e.WEBHOOK_BACKOFF_MS) {
    throw new ConfigError('invalid configuration:\n  WEBHOOK_BACKOFF_MAX_MS: must be at least WEBHOOK_BACKOFF_MS');
  }
  if (e.RECONCILE_BACKOFF_MAX_MS < e.RECONCILE_BACKOFF_MS) {
    throw new ConfigError('invalid configuration:\n  RECONCILE_BACKOFF_MAX_MS: must be at least RECONCILE_BACKOFF_MS');
  }
  return Object.freeze({
    nodeEnv: e.NODE_ENV, port: e.PORT, host: e.HOST,
    databaseUrl: e.DATABASE_URL ?? null, migrationsDatabaseUrl: e.MIGRATIONS_DATABASE_URL ?? null, embeddedPgPort: e.EMBEDDED_PG_PORT, embeddedPgDir: e.EMBEDDED_PG_DIR,
    openRouterBaseUrl: e.OPENROUTER_BASE_URL.replace(/\/+$/, ''), openRouterApiKey: e.OPENROUTER_API_KEY ?? null,
    adminToken: e.ADMIN_TOKEN ?? null, logLevel: e.LOG_LEVEL,
    metricsToken: e.METRICS_TOKEN ?? null, metricsRefreshMs: e.METRICS_REFRESH_MS, readinessCacheMs: e.READINESS_CACHE_MS,
    replicaId: e.REPLICA_ID ?? `${hostname()}-${process.pid}-${randomUUID().slice(0, 8)}`,
    minBalanceNano: e.MIN_BALANCE_USD, barrierMode: e.BARRIER, holdFallbackNano: e.HOLD_FALLBACK_USD,
    admissionQueueDepthMax: e.ADMISSION_QUEUE_DEPTH_MAX, pgPreparedStatements: e.PG_PREPARED_STATEMENTS === 'true', priceRefreshMs: e.PRICE_REFRESH_MS, priceBookReloadMs: e.PRICE_BOOK_RELOAD_MS,
    callCostMaxNano: e.CALL_COST_MAX_USD,
    lockPoolSize: e.LOCK_POOL_SIZE, writePoolSize: e.WRITE_POOL_SIZE, adminPoolSize: e.ADMIN_POOL_SIZE,
    writeBatchMax: e.WRITE_BATCH_MAX, writeBatchesInFlightMax: e.WRITE_BATCHES_IN_FLIGHT_MAX,
    pgOptions: e.PGOPTIONS, poolAcquireTimeoutMs: e.POOL_ACQUIRE_TIMEOUT_MS,
    lockTimeoutMs: e.LOCK_TIMEOUT_MS, barrierQueueWaitMs: e.BARRIER_QUEUE_WAIT_MS,
    barrierQueueDepthMax: e.BARRIER_QUEUE_DEPTH_MAX, statementTimeoutMs: e.STATEMENT_TIMEOUT_MS,
    upstreamTimeoutMs: e.UPSTREAM_TIMEOUT_MS, upstreamIdleTimeoutMs: e.UPSTREAM_IDLE_TIMEOUT_MS,
    upstreamDurationMsMax: e.UPSTREAM_DURATION_MS_MAX, upstreamConnectionsMax: e.UPSTREAM_CONNECTIONS_MAX,
    clientWriteStallMsMax: e.CLIENT_WRITE_STALL_MS_MAX,
    bodyBytesMax: e.BODY_BYTES_MAX, upstreamBodyBytesMax: e.UPSTREAM_BODY_BYTES_MAX,
    settleTimeoutMs: e.SETTLE_TIMEOUT_MS, costLookupAttemptsMax: e.COST_LOOKUP_ATTEMPTS_MAX,
    costLookupBackoffMs: e.COST_LOOKUP_BACKOFF_MS, costLookupTasksMax: e.COST_LOOKUP_TASKS_MAX,
    retryEntriesMax: e.RETRY_ENTRIES_MAX, retryAttemptsMax: e.RETRY_ATTEMPTS_MAX, modelsCacheMs: e.MODELS_CACHE_MS,
    authCacheMs: e.AUTH_CACHE_MS, authCacheEntriesMax: e.AUTH_CACHE_ENTRIES_MAX,
    heartbeatIntervalMs: e.HEARTBEAT_INTERVAL_MS, replicaLeaseMs: e.REPLICA_LEASE_MS,
    reconcileIntervalMs: e.RECONCILE_INTERVAL_MS, reconcileBatchMax: e.RECONCILE_BATCH_MAX,
    reconcileConcurrency: e.RECONCILE_CONCURRENCY, reconcileBackoffMs: e.RECONCILE_BACKOFF_MS,
    reconcileBackoffMsMax: e.RECONCILE_BACKOFF_MAX_MS, reconcileAttemptsMax: e.RECONCILE_ATTEMPTS_MAX,
    reconcileAgeMsMax: e.RECONCILE_AGE_MAX_MS, idempotencyTtlHours: e.IDEMPOTENCY_TTL_HOURS,
    idempotencyStreamBytesMax: e.IDEMPOTENCY_STREAM_BYTES_MAX, shutdownDeadlineMs: e.SHUTDOWN_DEADLINE_MS,
    webhookDeliveryIntervalMs: e.WEBHOOK_DELIVERY_INTERVAL_MS, webhookTimeoutMs: e.WEBHOOK_TIMEOUT_MS, webhookBatchMax: e.WEBHOOK_BATCH_MAX,
    webhookAttemptsMax: e.WEBHOOK_ATTEMPTS_MAX, webhookBackoffMs: e.WEBHOOK_BACKOFF_MS, webhookBackoffMsMax: e.WEBHOOK_BACKOFF_MAX_MS,
  });
}

/** `FOO=` in a shell or compose file means "not set", not "set to the empty string". */
function blankToUndefined(env: NodeJS.ProcessEnv): Record<string, string | undefined> {
  return Object.fromEntries(Object.entries(env).map(([key, value]) => [key, value === '' ? undefined : value]));
}
