// Shared by the admin reporting API tests: admin GETs with a deadline, an RFC 4180 CSV
// parser (independent of the server's writer), and a ledger written through the real SQL.
import { randomUUID } from 'node:crypto';
import { ledger, requests, users, type Queryable } from '@metergate/db';
import type { TestStack } from '@metergate/testkit';

export const HTTP_TIMEOUT_MS = 15_000;

export function adminGet(stack: TestStack, path: string, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${stack.url}${path}`, {
    headers: { authorization: `Bearer ${stack.adminToken}`, ...headers }, signal: AbortSignal.timeout(HTTP_TIMEOUT_MS),
  });
}

export async function adminJson<T>(stack: TestStack, path: string): Promise<T> {
  const response = await adminGet(stack, path);
  const text = await response.text();
  if (response.status !== 200) throw new Error(`GET ${path}: ${response.status} ${text}`);
  return JSON.parse(text) as T;
}

/** Every page of a keyset-paged admin list, following next_cursor. */
export async function allPages<T>(stack: TestStack, path: string): Promise<T[]> {
  const rows: T[] = [];
  let cursor: string | null = null;
  for (let pages = 0; pages < 1000; pages += 1) {
    const separator = path.includes('?') ? '&' : '?';
    const url = cursor === null ? path : `${path}${separator}cursor=${encodeURIComponent(cursor)}`;
    const page: { data: T[]; next_cursor: string | null } = await adminJson(stack, url);
    rows.push(...page.data);
    cursor = page.next_cursor;
    if (cursor === null) return rows;
  }
  throw new Error(`more than 1000 pages at ${path}`);
}


/** A JSON value as the CSV writes it: null is empty, numbers in decimal. */
export function asCsvText(value: unknown): string {
  return value === null ? '' : String(value);
}

export async function settle(db: Queryable, userId: string, model: string | null, upstreamCostNano: bigint): Promise<void> {
  const id = randomUUID();
  await requests.insertRequest(db, { id, userId, replicaId: 'reports-api-test', model, stream: false });
  const entry = await ledger.settleUsage(db, { requestId: id, upstreamCostNano, generationId: `gen-${id}`, promptTokens: 11, completionTokens: 22 });
  if (entry === null) throw new Error('not settled');
}

/** Users and a mixed ledger: grants with awkward notes (CSV quoting), usage over models. */
export async function seedSmallLedger(db: Queryable, userIds: string[]): Promise<void> {
  const notes = ['plain', 'with, comma', 'with "quotes"', 'two\r\nlines', ' leading space', null, 'ünïcödé ✓'];
  for (const [index, id] of userIds.entries()) {
    await users.insertUser(db, id);
    await ledger.appendCredit(db, { userId: id, kind: 'grant', amountNano: BigInt(index + 1) * 1_000_000_000n, note: notes[index % notes.length]! });
  }
  for (let i = 0; i < 40; i += 1) {
    const userId = userIds[i % userIds.length]!;
    await settle(db, userId, ['m/a', 'm/b', 'm/c'][i % 3]!, BigInt(1_000 + i * 137));
    if (i % 9 === 0) await ledger.appendCredit(db, { userId, kind: 'adjustment', amountNano: -BigInt(i + 1), note: notes[i % notes.length]! });
  }
}

export { parseCsv } from '@metergate/testkit';
