/**
 * The operators' query API (admin token): the ledger as JSON pages or a streamed CSV export,
 * usage summaries, users and requests lists. Every query parameter is validated; anything
 * unknown or malformed is a 400 in OpenAI's error shape naming the parameter.
 */
import { Router, type Request, type Response } from 'express';
import { z } from 'zod';
import { acquireClient, reports, usdTextToNano, type LedgerFilters } from '@metergate/db';
import { requireAdmin } from '../auth/middleware.js';
import { MetergateError } from '../errors.js';
import { LEDGER_CSV_COLUMNS, ledgerCsvRow } from '../http/ledger-csv.js';
import { entryJson, requestJson, usageJson, userListJson } from '../http/ledger-json.js';
import { assertStorableQuery } from '../http/text-fields.js';
import type { Services } from '../services.js';
import { adminPricingRoutes } from './admin-pricing.js';

const USER_ID_RE = /^[A-Za-z0-9][A-Za-z0-9._@:+-]{0,127}$/;
const LEDGER_PAGE_MAX = 1000;
const USAGE_GROUPS_MAX = 10_000;
const LIST_PAGE_MAX = 1000;
const PAGE_DEFAULT = 100;
/** Concurrent CSV exports per replica: each holds a write-pool client for its whole duration. */
const EXPORTS_CONCURRENT_MAX = 2;
/** CSV is written in chunks of about this many characters (and waits for drain when told). */
const CSV_CHUNK_CHARS = 64 * 1024;

const userId = z.string().regex(USER_ID_RE, 'must be a user id (1-128 characters of A-Z a-z 0-9 . _ @ : + -)');
const time = z.iso.datetime({ offset: true, error: 'must be an RFC 3339 timestamp such as 2025-01-31T00:00:00Z' })
  .transform((text) => new Date(text));
const limit = (max: number) => z.coerce.number({ error: `must be an integer from 1 to ${max}` })
  .int(`must be an integer from 1 to ${max}`).min(1, `must be at least 1`).max(max, `must be at most ${max}`);
const model = z.string().min(1, 'must not be empty').max(256, 'must be at most 256 characters');
const AMOUNT_RE = /^[+-]?\d{1,12}(\.\d{1,9})?$/;

const ledgerQuery = z.strictObject({
  user_id: userId.optional(),
  kind: z.enum(['grant', 'usage', 'adjustment']).optional(),
  model: model.optional(),
  since: time.optional(),
  until: time.optional(),
  limit: limit(LEDGER_PAGE_MAX).optional(),
  cursor: z.string().regex(/^\d{1,19}$/, 'must be a next_cursor value from a previous page').optional(),
  format: z.enum(['json', 'csv']).optional(),
});
const usageQuery = z.strictObject({
  group_by: z.enum(['user', 'model', 'day', 'hour', 'endpoint']),
  since: time.optional(),
  until: time.optional(),
  user_id: userId.optional(),
  model: model.optional(),
  limit: limit(USAGE_GROUPS_MAX).default(PAGE_DEFAULT),
});
const usersQuery = z.strictObject({
  sort: z.enum(['balance', 'spend', 'id']).default('id'),
  order: z.enum(['asc', 'desc']).default('asc'),
  balance_below_usd: z.string().regex(AMOUNT_RE, 'must be a decimal USD amount with at most 9 decimals, such as "1.00"').optional(),
  limit: limit(LIST_PAGE_MAX).default(PAGE_DEFAULT),
  cursor: z.string().min(1).max(1000).optional(),
});
const requestsQuery = z.strictObject({
  state: z.enum(['unsettled', 'in_flight', 'awaiting_cost', 'failed', 'unresolved', 'settled', 'voided']).optional(),
  user_id: userId.optional(),
  limit: limit(LIST_PAGE_MAX).default(PAGE_DEFAULT),
  cursor: z.string().regex(/^[0-9a-fA-F-]{36}$/, 'must be a next_cursor value from a previous page').optional(),
});

export function adminReportRoutes(services: Services, adminToken: string): Router {
  const router = Router();
  const db = services.pools.admin;
  const auth = requireAdmin(adminToken);
  const exports = { running: 0 };
  router.get('/admin/ledger', auth, async (req, res) => {
    const q = parseQuery(ledgerQuery, req.query);
    const filters: LedgerFilters = { userId: q.user_id, kind: q.kind, model: q.model, ...checkRange(q) };
    if (wantsCsv(req, q.format)) {
      if (q.limit !== undefined || q.cursor !== undefined) {
        throw new MetergateError('invalid_request', 'limit and cursor page the JSON form; the CSV export streams the whole filtered range', { param: q.limit !== undefined ? 'limit' : 'cursor' });
      }
      await exportCsv(services, exports, res, filters);
      return;
    }
    const pageSize = q.limit ?? PAGE_DEFAULT;
    // One row more than the page says whether another page exists (no empty last page).
    const entries = await reports.queryLedger(db, { ...filters, beforeId: q.cursor ?? null, limit: pageSize + 1 });
    const page = entries.slice(0, pageSize);
    res.json({ data: page.map(entryJson), next_cursor: entries.length > pageSize ? page.at(-1)!.id : null });
  });
  router.get('/admin/usage', auth, async (req, res) => {
    const q = parseQuery(usageQuery, req.query);
    const rows = await reports.usageSummary(db, { groupBy: q.group_by, userId: q.user_id, model: q.model, limit: q.limit, ...checkRange(q) });
    res.json({ data: rows.map(usageJson) });
  });
  router.get('/admin/users', auth, async (req, res) => {
    const q = parseQuery(usersQuery, req.query);
    const balanceBelowNano = q.balance_below_usd === undefined ? null : usdTextToNano(q.balance_below_usd);
    const page = await reportCall(() => reports.listUsers(db, { sort: q.sort, order: q.order, balanceBelowNano, limit: q.limit, cursor: q.cursor }));
    res.json({ data: page.users.map(userListJson), next_cursor: page.nextCursor });
  });
  router.get('/admin/requests', auth, async (req, res) => {
    const q = parseQuery(requestsQuery, req.query);
    const page = await reportCall(() => reports.listRequests(db, { state: q.state, userId: q.user_id, limit: q.limit, cursor: q.cursor }));
    res.json({ data: page.requests.map(requestJson), next_cursor: page.nextCursor });
  });
  router.use(adminPricingRoutes(services, adminToken));
  return router;
}

/**
 * Query parameters through a strict schema: unknown, repeated or malformed ones, and text
 * Postgres could not store, are a 400 naming the parameter.
 */
export function parseQuery<T extends z.ZodType>(schema: T, input: unknown): z.infer<T> {
  assertStorableQuery((input ?? {}) as Record<string, unknown>);
  const result = schema.safeParse(input ?? {});
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  if (issue.code === 'unrecognized_keys') {
    const known = schema instanceof z.ZodObject ? Object.keys(schema.shape as object).join(', ') : '';
    throw new MetergateError('invalid_request', `unknown parameter ${JSON.stringify(issue.keys[0])}; known: ${known}`, { param: issue.keys[0] });
  }
  const param = issue.path.join('.');
  throw new MetergateError('invalid_request', `${param || 'query'}: ${issue.message}`, { param: param || undefined });
}

function checkRange(q: { since?: Date | undefined; until?: Date | undefined }): { since: Date | null; until: Date | null } {
  if (q.since !== undefined && q.until !== undefined && q.since >= q.until) {
    throw new MetergateError('invalid_request', 'since must be before until (the range is [since, until))', { param: 'since' });
  }
  return { since: q.since ?? null, until: q.until ?? null };
}

/** A cursor the reports module cannot use is the caller's mistake: 400, naming it. */
async function reportCall<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    if (error instanceof reports.ReportQueryError) throw new MetergateError('invalid_request', error.message, { param: error.param });
    throw error;
  }
}

/** `format` decides when given; otherwise the Accept header (JSON unless it prefers CSV). */
function wantsCsv(req: Request, format: 'json' | 'csv' | undefined): boolean {
  if (format !== undefined) return format === 'csv';
  return req.accepts(['application/json', 'text/csv']) === 'text/csv';
}

// ---------------------------------------------------------------------------------------
// CSV export

/**
 * Streams the whole filtered range through a Postgres cursor (reports.streamLedger): memory
 * stays at one batch and one chunk whatever the range; when the socket buffer is full we wait
 * for 'drain'; when the client goes away we stop, closing the cursor. An error after the
 * first byte ends the connection (the error handler destroys it) so a cut file never looks whole.
 */
async function exportCsv(services: Services, exports: { running: number }, res: Response, filters: LedgerFilters): Promise<void> {
  if (exports.running >= EXPORTS_CONCURRENT_MAX) {
    throw new MetergateError('too_many_exports', `${EXPORTS_CONCURRENT_MAX} CSV exports are already running on this replica; retry when one ends`, { retryAfterS: 5 });
  }
  exports.running += 1;
  let failure: Error | undefined;
  try {
    const client = await acquireClient(services.pools.admin, 'admin', services.config.poolAcquireTimeoutMs);
    try {
      let chunk = `${LEDGER_CSV_COLUMNS.join(',')}\r\n`;
      for await (const entry of reports.streamLedger(client, filters)) {
        chunk += ledgerCsvRow(entry);
        if (chunk.length < CSV_CHUNK_CHARS) continue;
        if (!(await writeChunk(res, chunk))) return;
        chunk = '';
      }
      if (await writeChunk(res, chunk)) res.end();
    } catch (error) {
      failure = error as Error;
      throw error;
    } finally {
      client.release(failure);
    }
  } finally {
    exports.running -= 1;
  }
}

const CSV_HEADERS = { 'content-type': 'text/csv; charset=utf-8', 'content-disposition': 'attachment; filename="ledger.csv"', 'cache-control': 'no-store' };

/**
 * Writes, waiting for 'drain' if the buffer is full. False once the client has gone. The
 * headers go with the first chunk, so an error before it is still an ordinary JSON error.
 */
async function writeChunk(res: Response, chunk: string): Promise<boolean> {
  if (res.destroyed) return false;
  if (!res.headersSent) res.status(200).set(CSV_HEADERS);
  if (res.write(chunk)) return true;
  await new Promise<void>((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
  return !res.destroyed;
}
