// Public types of the simulator. Steering uses the wire's snake_case names both in the `sim`
// body field and in `SimulatorOptions.defaults`, so one vocabulary covers both.

/** An error answered before any output (HTTP status = error code). */
export interface SimErrorBefore {
  status: number;
  message?: string;
  metadata?: Record<string, unknown>;
  retry_after_s?: number;
}

/** Per-request steering (`"sim": {...}` in the body) or simulator-wide defaults. */
export interface SimSteering {
  latency_ms?: number;
  chunk_delay_ms?: number;
  keepalive_ms?: number;
  completion_tokens?: number;
  prompt_tokens?: number;
  error_before?: SimErrorBefore | null;
  error_after_tokens?: number | null;
  usage_on_error?: boolean;
  omit_usage?: boolean;
  cut_after_tokens?: number | null;
  usage_in_last_choice_chunk?: boolean;
  cancellable?: boolean;
  lookup_404_ms?: number | null;
  split_writes?: boolean;
  comment_every_tokens?: number;
  /**
   * Bring-your-own-key: `usage.is_byok` true, `usage.cost` (and /generation's `total_cost`) only
   * OpenRouter's fee (5 % of the provider's charge, rounded up to a nano-USD), the provider's
   * charge in `cost_details.upstream_inference_cost` (and /generation's `upstream_inference_cost`).
   */
  byok?: boolean;
}

export interface SimulatorOptions {
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 0: an ephemeral port. */
  port?: number;
  /** When set, API routes demand `Authorization: Bearer <apiKey>`. */
  apiKey?: string;
  /** How long GET /generation keeps answering 404 after a generation ends. Default 300. */
  lookup404Ms?: number;
  /** Steering applied to every request; a request's `sim` field overrides it per field. */
  defaults?: SimSteering;
}

export type FinishReason = 'stop' | 'length' | 'error' | null;

export interface GenerationRecord {
  id: string;
  model: string;
  /** The `user` field of the request body, or null. */
  user: string | null;
  stream: boolean;
  promptTokens: number;
  /** Completion tokens generated and billed (for a cancelled stream: written before the close). */
  completionTokens: number;
  /**
   * What the generation cost in all, in nano-USD; 0n while running. With BYOK that is the
   * provider's charge plus OpenRouter's fee: what a proxy must bill.
   */
  costNano: bigint;
  /** Bring-your-own-key generation (steering `byok`). */
  isByok: boolean;
  /** With BYOK, the provider's part of costNano (the rest is OpenRouter's fee); else null. */
  upstreamInferenceNano: bigint | null;
  cancelled: boolean;
  finishReason: FinishReason;
  /** performance.timeOrigin + performance.now() when the request was accepted. */
  startedAtMs: number;
  /** Same clock, when the last byte was handed to the socket or generation stopped. */
  endedAtMs: number | null;
  state: 'running' | 'done';
}

export interface RequestLogEntry {
  method: string;
  /** The raw request target, query string included. */
  path: string;
  /** The Authorization header as received, or null. */
  authorization: string | null;
  /** The `user` field of a JSON body, or null. */
  user: string | null;
  timeMs: number;
}

export interface Simulator {
  /** Base URL ending in /api/v1. */
  readonly url: string;
  readonly port: number;
  /** Every API request received, oldest first (control routes under /__sim are not logged). */
  readonly requestLog: readonly RequestLogEntry[];
  /** Stops all generations, closes the server and every socket. */
  close(): Promise<void>;
  /** Snapshot of the books, oldest first. */
  generations(): GenerationRecord[];
  billedNano(filter?: { user?: string }): bigint;
  /** Forgets the books and the request log. */
  reset(): void;
  /** Resolves once no generation is running; rejects after `timeoutMs` (default 10 s). */
  whenIdle(timeoutMs?: number): Promise<void>;
}
