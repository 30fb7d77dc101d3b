// The reliability pieces on their own: the reconciler's claim under concurrency (real
// Postgres), its retry policy, and how an idempotent replay is built.
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { requests, replicas, idempotency } from '@metergate/db';
import { createTestDatabase, type TestDatabase } from '@metergate/testkit';
import { canonicalJson, bodyHash } from '@metergate/server';
import { StreamSummary } from '@metergate/server';
import { toStoredResponse } from '@metergate/server';
import { nextLookupDelayMs, reconcileOutcome } from '@metergate/server';

const CLAIM = { leaseMs: 1_000, claimMs: 60_000, batchMax: 10, inFlightMsMax: 3_600_000, judgeHeartbeats: true };

async function seed(db: TestDatabase, rows: number, state: 'in_flight' | 'awaiting_cost', replicaId: string): Promise<string[]> {
  await db.pool.query(`insert into users (id) values ('u') on conflict do nothing`);
  const ids = Array.from({ length: rows }, () => randomUUID());
  for (const id of ids) {
    await db.pool.query(
      `insert into requests (id, user_id, replica_id, stream, state, generation_id, next_lookup_at)
       values ($1::uuid, 'u', $2::text, true, $3::text, 'gen-' || $1::text, case when $3::text = 'awaiting_cost' then now() end)`,
      [id, replicaId, state]);
  }
  return ids;
}

QUnit.module('reliability units: reconciler claims', (hooks) => {
  let db: TestDatabase;
  hooks.beforeEach(async () => { db = await createTestDatabase(); });
  hooks.afterEach(async () => { await db.drop(); });

  QUnit.test('concurrent claims on separate connections never share a row (FOR UPDATE SKIP LOCKED + claim)', async (assert) => {
    const ids = await seed(db, 40, 'awaiting_cost', 'gone');
    const clients = await Promise.all(Array.from({ length: 4 }, async () => {
      const client = new pg.Client({ connectionString: db.url });
      await client.connect();
      return client;
    }));
    try {
      const rounds = await Promise.all(clients.map(async (client) => {
        const mine: string[] = [];
        for (let i = 0; i < 6; i += 1) mine.push(...(await requests.claimForReconcile(client, { ...CLAIM, batchMax: 3 })).map((row) => row.id));
        return mine;
      }));
      const all = rounds.flat();
      assert.strictEqual(new Set(all).size, all.length, 'no row was claimed twice');
      assert.strictEqual(all.length, ids.length, 'every due row was claimed once');
      assert.strictEqual((await requests.claimForReconcile(db.pool, CLAIM)).length, 0, 'claimed rows are hidden until the claim expires');
      const attempts = await db.pool.query<{ n: number }>('select min(lookup_attempts)::integer as n from requests');
      assert.strictEqual(attempts.rows[0]!.n, 1, 'each claim counted one attempt');
    } finally {
      await Promise.all(clients.map((client) => client.end()));
    }
  });

  QUnit.test('in_flight rows are claimed only when their owner is silent past the lease (or too old)', async (assert) => {
    await replicas.heartbeat(db.pool, 'alive', false);
    await replicas.heartbeat(db.pool, 'dead', false);
    await db.pool.query(`update replicas set heartbeat_at = now() - interval '5 seconds' where id = 'dead'`);
    const [aliveId] = await seed(db, 1, 'in_flight', 'alive');
    const [deadId] = await seed(db, 1, 'in_flight', 'dead');
    const [missingId] = await seed(db, 1, 'in_flight', 'never-registered');
    await replicas.registerStart(db.pool, 'restarted');
    const [beforeRestartId] = await seed(db, 1, 'in_flight', 'restarted');
    await db.pool.query(`update requests set started_at = now() - interval '1 second' where id = $1::uuid`, [beforeRestartId]);
    const [afterRestartId] = await seed(db, 1, 'in_flight', 'restarted');
    // Just after an outage a stale heartbeat proves nothing: only the explicit signs count.
    const cautious = await requests.claimForReconcile(db.pool, { ...CLAIM, judgeHeartbeats: false });
    assert.deepEqual(cautious.map((row) => row.id).sort(), [missingId, beforeRestartId].sort(),
      'not judging heartbeats: no row and a restart still count, a stale heartbeat does not');
    await db.pool.query('update requests set next_lookup_at = null');
    const claimed = await requests.claimForReconcile(db.pool, CLAIM);
    assert.deepEqual(claimed.map((row) => row.id).sort(), [deadId, missingId, beforeRestartId].sort(),
      'dead and unknown owners, and what a replica id left before it restarted; not live calls');
    assert.true(claimed.every((row) => !row.ownerAlive), 'flagged as orphans');
    const old = await requests.claimForReconcile(db.pool, { ...CLAIM, inFlightMsMax: 0 });
    assert.deepEqual(old.map((row) => [row.id, row.ownerAlive]).sort(), [[aliveId, true], [afterRestartId, true]].sort(),
      'a live owner\'s row is taken once older than any call may last');
  });

  QUnit.test('orphaned idempotency keys: released when nothing was charged, answered "interrupted" otherwise', async (assert) => {
    await seed(db, 0, 'in_flight', 'x');
    const [charged] = await seed(db, 1, 'in_flight', 'dead');
    const neverRan = randomUUID();
    for (const [key, requestId] of [['k-charged', charged!], ['k-never', neverRan]] as const) {
      assert.true(await idempotency.claimKey(db.pool, {
        userId: 'u', key, bodyHash: bodyHash({ key }), requestId, replicaId: 'dead', stream: true, ttlHours: 24,
      }));
    }
    const interrupted = { status: 500, headers: { 'content-type': 'application/json' }, body: Buffer.from('{"error":{}}') };
    const options = { leaseMs: 1_000, orphanAgeMs: 600_000, interrupted, limit: 10 };
    await db.pool.query(`insert into replicas (id, started_at, heartbeat_at) values ('dead', now() - interval '1 hour', now() - interval '5 seconds')`);
    assert.deepEqual(await idempotency.finishOrphanKeys(db.pool, { ...options, judgeHeartbeats: false }), { released: 0, interrupted: 0 },
      'not judging heartbeats: a stale owner\'s keys are left running');
    const result = await idempotency.finishOrphanKeys(db.pool, { ...options, judgeHeartbeats: true });
    assert.deepEqual(result, { released: 1, interrupted: 1 });
    assert.strictEqual(await idempotency.findKey(db.pool, 'u', 'k-never'), null, 'the key of an attempt that never ran is free again');
    assert.strictEqual((await idempotency.findKey(db.pool, 'u', 'k-charged'))?.response?.status, 500, 'the other replays the interrupted answer');
  });

  QUnit.test('a live owner gave up writing a key: finished once its request has been closed for orphanAgeMs', async (assert) => {
    await replicas.heartbeat(db.pool, 'alive', false);
    const [closed, recent] = await seed(db, 2, 'in_flight', 'alive');
    await db.pool.query(`update requests set state = 'settled', cost_nano = 1, settled_at = now(), updated_at = now() - interval '20 minutes' where id = $1::uuid`, [closed]);
    await db.pool.query(`update requests set state = 'unresolved', updated_at = now() where id = $1::uuid`, [recent]);
    for (const [key, requestId] of [['k-closed', closed!], ['k-recent', recent!]] as const) {
      assert.true(await idempotency.claimKey(db.pool, {
        userId: 'u', key, bodyHash: bodyHash({ key }), requestId, replicaId: 'alive', stream: true, ttlHours: 24,
      }));
    }
    const interrupted = { status: 500, headers: { 'content-type': 'application/json' }, body: Buffer.from('{"error":{}}') };
    const result = await idempotency.finishOrphanKeys(db.pool, { leaseMs: 1_000, orphanAgeMs: 600_000, interrupted, limit: 10, judgeHeartbeats: true });
    assert.deepEqual(result, { released: 0, interrupted: 1 }, 'only the key of the request closed 20 minutes ago');
    assert.strictEqual((await idempotency.findKey(db.pool, 'u', 'k-closed'))?.state, 'done');
    assert.strictEqual((await idempotency.findKey(db.pool, 'u', 'k-recent'))?.state, 'running', 'a key whose request just closed is its owner\'s to write');
  });
});

QUnit.module('reliability units: policy and replay', () => {
  QUnit.test('lookup backoff doubles up to the cap; gives up after attempts or age', (assert) => {
    const policy = { backoffMs: 100, backoffMsMax: 1_000, attemptsMax: 5, ageMsMax: 60_000 };
    assert.deepEqual([1, 2, 3, 4, 5, 9].map((n) => nextLookupDelayMs(n, policy)), [100, 200, 400, 800, 1_000, 1_000]);
    assert.strictEqual(reconcileOutcome({ lookupAttempts: 4, ageMs: 1_000 }, policy), 'retry_later');
    assert.strictEqual(reconcileOutcome({ lookupAttempts: 5, ageMs: 1_000 }, policy), 'unresolved_exhausted');
    assert.strictEqual(reconcileOutcome({ lookupAttempts: 1, ageMs: 60_000 }, policy), 'unresolved_exhausted');
  });

  QUnit.test('canonical body hash ignores key order and whitespace, not values', (assert) => {
    const a = JSON.parse('{"b": 1, "a": {"y": [1, 2], "x": "é"}}') as unknown;
    const b = JSON.parse('{"a":{"x":"é","y":[1,2]},"b":1}') as unknown;
    assert.strictEqual(canonicalJson(a), canonicalJson(b));
    assert.true(bodyHash(a).equals(bodyHash(b)));
    assert.false(bodyHash(a).equals(bodyHash({ a: { x: 'é', y: [2, 1] }, b: 1 })), 'array order matters');
  });

  QUnit.test('a stream too large (or incomplete) to keep is replayed as an equivalent completed stream', (assert) => {
    const events = [
      ': OPENROUTER PROCESSING\n\n',
      'data: {"id":"gen-1","object":"chat.completion.chunk","created":1,"model":"m","provider":"p","choices":[{"index":0,"delta":{"role":"assistant","content":"Hel"},"finish_reason":null}]}\n\n',
      'data: {"id":"gen-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"lo, wörld"},"finish_reason":null}]}\n\n',
      'data: {"id":"gen-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":""},"finish_reason":"stop","native_finish_reason":"stop"}]}\n\n',
      'data: {"id":"gen-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"cost":0.00001}}\n\n',
      'data: [DONE]\n\n',
    ];
    const bytes = Buffer.from(events.join(''));
    const summary = new StreamSummary(1_000);
    // Fed in 7-byte pieces: events and the multibyte ö split across reads.
    for (let i = 0; i < bytes.length; i += 7) summary.feed(bytes.subarray(i, i + 7));
    const headers = { 'content-type': 'text/event-stream' };
    assert.true(toStoredResponse({ status: 200, headers, bytes, summary }).body.equals(bytes), 'kept byte for byte when it fits');
    const compact = toStoredResponse({ status: 200, headers, bytes: null, summary }).body.toString('utf8');
    const data = compact.split('\n\n').filter((e) => e.startsWith('data: ')).map((e) => e.slice(6));
    assert.strictEqual(data.at(-1), '[DONE]', 'ends with [DONE]');
    const chunks = data.slice(0, -1).map((e) => JSON.parse(e) as { id: string; choices: Array<{ delta: { content?: string }; finish_reason: string | null }>; usage?: { cost: number } });
    assert.strictEqual(chunks[0]!.choices[0]!.delta.content, 'Hello, wörld', 'one content chunk with the whole text');
    assert.strictEqual(chunks[1]!.choices[0]!.finish_reason, 'stop', 'then the finish');
    assert.strictEqual(chunks[2]!.usage?.cost, 0.00001, 'then the usage');
    assert.true(chunks.every((chunk) => chunk.id === 'gen-1'), 'same generation id');
  });
});
