import { CodedError } from '@metergate/db';

/**
 * Our operating errors: one base class with a stable `code`, one table from code to HTTP
 * status and OpenAI error `type`. Programmer errors are assertions, not these.
 */
const TABLE = {
  invalid_json: { status: 400, type: 'invalid_request_error' },
  invalid_request: { status: 400, type: 'invalid_request_error' },
  unpriced_model: { status: 400, type: 'invalid_request_error' },
  invalid_api_key: { status: 401, type: 'authentication_error' },
  insufficient_credits: { status: 402, type: 'insufficient_quota' },
  spend_limit_reached: { status: 402, type: 'insufficient_quota' },
  model_not_allowed: { status: 403, type: 'permission_error' },
  not_found: { status: 404, type: 'invalid_request_error' },
  conflict: { status: 409, type: 'invalid_request_error' },
  // nginx's convention for "the client closed the request": logged, never seen by the client.
  client_closed: { status: 499, type: 'invalid_request_error' },
  payload_too_large: { status: 413, type: 'invalid_request_error' },
  unprocessable: { status: 422, type: 'invalid_request_error' },
  too_many_exports: { status: 429, type: 'rate_limit_error' },
  rate_limit_exceeded: { status: 429, type: 'rate_limit_error' },
  too_many_concurrent_calls: { status: 429, type: 'rate_limit_error' },
  internal_error: { status: 500, type: 'server_error' },
  upstream_unreachable: { status: 502, type: 'upstream_error' },
  upstream_bad_response: { status: 502, type: 'upstream_error' },
  upstream_auth_failed: { status: 502, type: 'upstream_error' },
  upstream_account_limit: { status: 502, type: 'upstream_error' },
  barrier_busy: { status: 503, type: 'server_error' },
  database_unavailable: { status: 503, type: 'server_error' },
  upstream_busy: { status: 503, type: 'upstream_error' },
  draining: { status: 503, type: 'server_error' },
  upstream_timeout: { status: 504, type: 'upstream_error' },
} as const satisfies Record<string, { status: number; type: string }>;

export type ErrorCode = keyof typeof TABLE;

/** A CodedError whose code is in the table: the errors that become HTTP answers. */
export class MetergateError extends CodedError<ErrorCode> {
  constructor(
    code: ErrorCode,
    message: string,
    readonly options: { retryAfterS?: number; param?: string; cause?: unknown; headers?: Record<string, string> } = {},
  ) {
    super(code, message, { cause: options.cause });
  }

  get status(): number { return TABLE[this.code].status; }
  get type(): string { return TABLE[this.code].type; }

  /** OpenAI's error body: {"error": {"message", "type", "code", "param"}}. */
  toBody(): { error: { message: string; type: string; code: ErrorCode; param: string | null } } {
    return { error: { message: this.message, type: this.type, code: this.code, param: this.options.param ?? null } };
  }
}

export function statusOf(code: ErrorCode): number {
  return TABLE[code].status;
}
