// Shared helpers for the proxy's HTTP-level tests: requests, an SSE reader, the books check,
// the OpenAI error-shape check. Every wait here is bounded.
import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import { usdTextToNano } from '@metergate/db';
import { loadConfig, startRuntime } from '@metergate/server';
import { startSimulator, type GenerationRecord } from '@metergate/simulator';
import { balanceBreaches, createTestDatabase, eventually, ledgerUsageNano, type TestStack } from '@metergate/testkit';

/** Every HTTP call in these tests gives up after this long rather than hang the suite. */
export const HTTP_TIMEOUT_MS = 15_000;

export type Body = Record<string, unknown>;

export function messages(content = 'Say hello in a few words, please.'): unknown[] {
  return [{ role: 'user', content }];
}

export function userHeaders(key: string): Record<string, string> {
  return { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
}

/** POST a chat completion to the proxy (raw string bodies are sent as they are). */
export function chat(stack: TestStack, key: string | null, body: Body | string, init: RequestInit & { path?: string } = {}): Promise<Response> {
  const headers: Record<string, string> = key === null ? { 'content-type': 'application/json' } : userHeaders(key);
  return fetch(`${stack.url}${init.path ?? '/v1/chat/completions'}`, {
    method: 'POST', headers, body: typeof body === 'string' ? body : JSON.stringify(body),
    signal: AbortSignal.timeout(HTTP_TIMEOUT_MS), ...init,
  });
}

/** The operator's OpenRouter key as the proxy was configured with it. */
export function operatorKey(stack: TestStack): string {
  const key = stack.runtime.services.config.openRouterApiKey;
  if (key === null) throw new Error('the stack has no operator key');
  return key;
}

/** POST straight to the simulator with the operator key: what the upstream itself sends. */
export function directChat(stack: TestStack, body: Body): Promise<Response> {
  return fetch(`${stack.sim.url}/chat/completions`, {
    method: 'POST', headers: { authorization: `Bearer ${operatorKey(stack)}`, 'content-type': 'application/json' },
    body: JSON.stringify(body), signal: AbortSignal.timeout(HTTP_TIMEOUT_MS),
  });
}

/** The body the proxy sends upstream for `body` from `userId` (see billing/chat-body.ts). */
export function asForwarded(body: Body, userId: string): Body {
  const usage = typeof body.usage === 'object' && body.usage !== null ? body.usage : {};
  return { ...body, usage: { ...usage, include: true }, user: userId };
}

export interface SseRead {
  /** Blocks between blank lines, in order, comments included (`: ...`). */
  events: string[];
  text: string;
  /** ms from `startedAt` at which each event was complete. */
  atMs: number[];
  error: unknown;
}

/**
 * Reads an SSE body as it streams. `stopWhen` returning true stops reading (the caller may
 * then abort the request). Text is decoded as a stream (characters split across reads).
 */
export async function readSse(response: Response, startedAt = Date.now(), stopWhen: (events: string[]) => boolean = () => false): Promise<SseRead> {
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  const read: SseRead = { events: [], text: '', atMs: [], error: null };
  let buffered = '';
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      const text = decoder.decode(value, { stream: true });
      read.text += text;
      buffered += text;
      let end: number;
      while ((end = buffered.indexOf('\n\n')) >= 0) {
        read.events.push(buffered.slice(0, end));
        read.atMs.push(Date.now() - startedAt);
        buffered = buffered.slice(end + 2);
      }
      if (stopWhen(read.events)) return read;
    }
    read.text += decoder.decode();
  } catch (error) {
    read.error = error;
  }
  return read;
}

export function isDataEvent(event: string): boolean {
  return event.startsWith('data:') && !event.startsWith('data: [DONE]');
}

export function contentEvents(events: string[]): string[] {
  return events.filter((event) => {
    if (!isDataEvent(event)) return false;
    const chunk = JSON.parse(event.slice(5)) as { choices?: Array<{ delta?: { content?: string } }> };
    return (chunk.choices?.[0]?.delta?.content ?? '') !== '';
  });
}

/** Replaces what legitimately differs between two generations of the same plan. */
export function normalize(text: string, generationId: string): string {
  return text.split(generationId).join('GEN').replace(/"created":\d+/g, '"created":0');
}

/** The simulator's record of one generation. */
export function generation(stack: TestStack, id: string): GenerationRecord {
  const record = stack.sim.generations().find((g) => g.id === id);
  if (record === undefined) throw new Error(`the simulator has no generation ${id}`);
  return record;
}

export function generationsOf(stack: TestStack, user: string): GenerationRecord[] {
  return stack.sim.generations().filter((g) => g.user === user);
}

/**
 * The proxy's ledger equals the simulator's books for `user` to the nano-dollar (waiting,
 * bounded, for background cost lookups), and balance = Σ ledger holds for everyone.
 */
export async function assertBooks(assert: Assert, stack: TestStack, user: string, timeoutMs = 10_000): Promise<bigint> {
  await stack.sim.whenIdle(timeoutMs);
  const billed = stack.sim.billedNano({ user });
  const ledger = await eventually(() => ledgerUsageNano(stack.db.pool, user), (value) => value === billed, timeoutMs);
  assertNano(assert, ledger, billed, `ledger of ${user} equals the simulator's books`);
  assert.deepEqual(await balanceBreaches(stack.db.pool), [], 'balance = Σ ledger for every user');
  return billed;
}

export async function requestRow(stack: TestStack, requestId: string): Promise<{ state: string; reason: string | null; generation_id: string | null; cost_nano: string | null } | undefined> {
  const result = await stack.db.pool.query<{ state: string; reason: string | null; generation_id: string | null; cost_nano: string | null }>(
    'select state, reason, generation_id, cost_nano::text from requests where id = $1::uuid', [requestId]);
  return result.rows[0];
}

/** The request's row once it has left `in_flight` (or whatever it is at the deadline). */
export async function settledState(stack: TestStack, requestId: string, timeoutMs = 10_000): Promise<string | undefined> {
  const row = await eventually(() => requestRow(stack, requestId), (r) => r !== undefined && r.state !== 'in_flight' && r.state !== 'awaiting_cost', timeoutMs);
  return row?.state;
}

export function requestIdOf(response: Response): string {
  const id = response.headers.get('x-request-id');
  if (id === null) throw new Error('no x-request-id header');
  return id;
}

/** OpenAI's error shape with the expected status and code. Returns the error object. */
export async function assertOpenAiError(assert: Assert, response: Response, status: number, code: string): Promise<Record<string, unknown>> {
  const text = await response.text();
  assert.strictEqual(response.status, status, `status ${status}: ${text}`);
  assert.true((response.headers.get('content-type') ?? '').startsWith('application/json'), 'JSON error body');
  const body = JSON.parse(text) as { error?: Record<string, unknown> };
  const error = body.error ?? {};
  assert.deepEqual(Object.keys(body), ['error'], 'only an `error` member');
  assert.strictEqual(error.code, code, `code ${code}`);
  assert.strictEqual(typeof error.message, 'string', 'message is a string');
  assert.true((error.message as string).length > 0, 'message is not empty');
  assert.strictEqual(typeof error.type, 'string', 'type is a string');
  assert.true('param' in error && (error.param === null || typeof error.param === 'string'), 'param is null or a string');
  return error;
}

/** A port nothing listens on (bound, then released). */
export { freePort as closedPort } from '@metergate/testkit';

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export interface LoggedStack extends TestStack {
  /** Every log line the proxy wrote (JSON text), at level trace. */
  readonly logs: string[];
}

/**
 * Like startStack(), but the proxy logs at trace level into memory so tests can search the
 * logs. Built from the same parts (loadConfig, startRuntime, createTestDatabase), since
 * startStack() takes no logger.
 */
export async function startLoggedStack(env: Record<string, string> = {}): Promise<LoggedStack> {
  const db = await createTestDatabase();
  const simKey = `sk-or-operator-${randomBytes(12).toString('hex')}`;
  const sim = await startSimulator({ apiKey: simKey, lookup404Ms: 100, host: '127.0.0.1', port: 0 });
  const adminToken = `admin-${randomBytes(12).toString('hex')}`;
  const config = loadConfig({
    NODE_ENV: 'test', PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'trace', DATABASE_URL: db.url,
    OPENROUTER_BASE_URL: sim.url, OPENROUTER_API_KEY: simKey, ADMIN_TOKEN: adminToken, COST_LOOKUP_BACKOFF_MS: '50', ...env,
  });
  const logs: string[] = [];
  const log = pino({ level: 'trace' }, { write: (line: string) => { logs.push(line); } });
  const runtime = await startRuntime({ config, log, databaseUrl: db.url, openRouterApiKey: simKey, adminToken });
  const admin = (method: string, path: string, body?: unknown) => fetch(`${runtime.url}${path}`, {
    method, headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(HTTP_TIMEOUT_MS),
  });
  return {
    url: runtime.url, adminToken, db, sim, runtime, admin, logs,
    async createUser(id, grantUsd = '10.00') {
      const created = await admin('POST', '/admin/users', { id });
      if (created.status !== 201) throw new Error(`create user ${id}: ${created.status} ${await created.text()}`);
      const { api_key: apiKey } = await created.json() as { api_key: string };
      if (usdTextToNano(grantUsd) === 0n) return apiKey;
      const credited = await admin('POST', `/admin/users/${id}/credits`, { amount_usd: grantUsd });
      if (credited.status !== 201) throw new Error(`credit ${id}: ${credited.status} ${await credited.text()}`);
      return apiKey;
    },
    async close() {
      await runtime.close(5_000);
      await sim.close();
      await db.drop();
    },
  };
}

/**
 * Compares nano-USD amounts as decimal text: QUnit's TAP reporter cannot serialize a bigint,
 * and a failing bigint assertion stalls the whole run instead of reporting.
 */
export function assertNano(assert: Assert, actual: bigint, expected: bigint, message?: string): void {
  assert.strictEqual(actual.toString(), expected.toString(), message);
}
