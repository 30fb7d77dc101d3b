// Resolves the `sim` body field (over the simulator-wide defaults) into validated, clamped
// settings. Wrong types are a 400 so a mistyped test fails loudly; out-of-range numbers are
// clamped so a test cannot wedge the simulator; unknown fields are ignored.

export interface ErrorBefore {
  status: number;
  message: string | null;
  metadata: Record<string, unknown> | null;
  retryAfterS: number | null;
}

export interface Steering {
  latencyMs: number;
  chunkDelayMs: number;
  /** 0 = only the initial comment, no repeats. */
  keepaliveMs: number;
  completionTokens: number;
  promptTokens: number | null;
  errorBefore: ErrorBefore | null;
  errorAfterTokens: number | null;
  usageOnError: boolean;
  omitUsage: boolean;
  cutAfterTokens: number | null;
  usageInLastChoiceChunk: boolean;
  cancellable: boolean;
  lookup404Ms: number | null;
  splitWrites: boolean;
  commentEveryTokens: number;
  /** Bring-your-own-key: usage.cost is only OpenRouter's fee, the provider's charge is apart. */
  byok: boolean;
}

export const STEERING_LIMITS = {
  delayMaxMs: 600_000,
  keepaliveMinMs: 10,
  completionTokensMax: 100_000,
  promptTokensMax: 10_000_000,
  retryAfterMaxS: 86_400,
  errorStatusMin: 400,
  errorStatusMax: 599,
} as const;

export class SteeringError extends Error {}

type Raw = Record<string, unknown>;

export function isObject(value: unknown): value is Raw {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function int(raw: Raw, key: string, min: number, max: number): number | null {
  const value = raw[key];
  if (value === undefined || value === null) return null;
  if (typeof value !== 'number' || !Number.isFinite(value)) {
    throw new SteeringError(`sim.${key} must be a number`);
  }
  return Math.min(max, Math.max(min, Math.floor(value)));
}

function bool(raw: Raw, key: string, fallback: boolean): boolean {
  const value = raw[key];
  if (value === undefined || value === null) return fallback;
  if (typeof value !== 'boolean') throw new SteeringError(`sim.${key} must be a boolean`);
  return value;
}

function keepalive(raw: Raw): number {
  const value = int(raw, 'keepalive_ms', 0, STEERING_LIMITS.delayMaxMs) ?? 15_000;
  return value === 0 ? 0 : Math.max(STEERING_LIMITS.keepaliveMinMs, value);
}

function errorBefore(raw: Raw): ErrorBefore | null {
  const value = raw['error_before'];
  if (value === undefined || value === null) return null;
  if (!isObject(value)) throw new SteeringError('sim.error_before must be an object');
  const { errorStatusMin, errorStatusMax, retryAfterMaxS } = STEERING_LIMITS;
  const status = int(value, 'status', errorStatusMin, errorStatusMax);
  if (status === null) throw new SteeringError('sim.error_before.status is required');
  const message = value['message'];
  if (message !== undefined && typeof message !== 'string') {
    throw new SteeringError('sim.error_before.message must be a string');
  }
  const metadata = value['metadata'];
  if (metadata !== undefined && !isObject(metadata)) {
    throw new SteeringError('sim.error_before.metadata must be an object');
  }
  return {
    status,
    message: message ?? null,
    metadata: metadata ?? null,
    retryAfterS: int(value, 'retry_after_s', 0, retryAfterMaxS),
  };
}

/** Merges `sim` over `defaults` field by field, then validates once. Throws SteeringError. */
export function resolveSteering(defaults: unknown, sim: unknown): Steering {
  if (sim !== undefined && sim !== null && !isObject(sim)) {
    throw new SteeringError('sim must be an object');
  }
  const raw: Raw = { ...(isObject(defaults) ? defaults : {}), ...(sim ?? {}) };
  const { delayMaxMs, completionTokensMax, promptTokensMax } = STEERING_LIMITS;
  return {
    latencyMs: int(raw, 'latency_ms', 0, delayMaxMs) ?? 0,
    chunkDelayMs: int(raw, 'chunk_delay_ms', 0, delayMaxMs) ?? 0,
    keepaliveMs: keepalive(raw),
    completionTokens: int(raw, 'completion_tokens', 0, completionTokensMax) ?? 8,
    promptTokens: int(raw, 'prompt_tokens', 0, promptTokensMax),
    errorBefore: errorBefore(raw),
    errorAfterTokens: int(raw, 'error_after_tokens', 0, completionTokensMax),
    usageOnError: bool(raw, 'usage_on_error', false),
    omitUsage: bool(raw, 'omit_usage', false),
    cutAfterTokens: int(raw, 'cut_after_tokens', 0, completionTokensMax),
    usageInLastChoiceChunk: bool(raw, 'usage_in_last_choice_chunk', false),
    cancellable: bool(raw, 'cancellable', true),
    lookup404Ms: int(raw, 'lookup_404_ms', 0, delayMaxMs),
    splitWrites: bool(raw, 'split_writes', false),
    commentEveryTokens: int(raw, 'comment_every_tokens', 0, completionTokensMax) ?? 0,
    byok: bool(raw, 'byok', false),
  };
}
