import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { BarrierBusyError, costLockKey, type CostBarrier } from '@metergate/db';
import { createTestDatabase, eventually, type TestDatabase } from '@metergate/testkit';
import { advisoryLocks, counters, IDLE, replica, settle, sleep, within, type Replica } from './helpers.js';

const now = (): number => performance.now();
const TEST_MS = 20_000;

function busyReason(outcome: { ok: boolean; error?: unknown }): string {
  if (outcome.ok) return 'resolved';
  return outcome.error instanceof BarrierBusyError ? outcome.error.reason : `other: ${String(outcome.error)}`;
}

/** True when any two [start, end] intervals overlap. */
function overlaps(intervals: Array<{ start: number; end: number }>): boolean {
  const sorted = [...intervals].sort((a, b) => a.start - b.start);
  return sorted.some((interval, i) => i > 0 && interval.start < sorted[i - 1]!.end);
}

/** Holds `userId`'s cost lock on `barrier` until `release` is called; resolves once it is held. */
async function holdLock(barrier: CostBarrier, userId: string): Promise<{ release: () => void; done: Promise<unknown>; pid: number }> {
  let release!: () => void;
  const gate = new Promise<void>((resolve) => { release = resolve; });
  let held!: (pid: number) => void;
  const holding = new Promise<number>((resolve) => { held = resolve; });
  const done = barrier.withUserCostLock(userId, async ({ client }) => {
    held((client as unknown as { processID: number }).processID);
    await within(TEST_MS, gate, 'held lock release');
    return 'held';
  });
  // Callers await `done` themselves; this only keeps an early rejection from being unhandled.
  done.catch(() => undefined);
  const pid = await within(5_000, holding, 'taking the lock');
  return { release, done, pid };
}

QUnit.module('cost-barrier (real Postgres)', (hooks) => {
  let db: TestDatabase;
  const replicas: Replica[] = [];
  const make = (...args: Parameters<typeof replica>): Replica => {
    const r = replica(...args);
    replicas.push(r);
    return r;
  };

  hooks.before(async () => { db = await createTestDatabase(); });
  hooks.afterEach(async () => {
    await Promise.all(replicas.splice(0).map((r) => r.pools.end()));
  });
  hooks.after(async () => { await db.drop(); });

  QUnit.test('the holder runs inside a transaction holding the bigint advisory lock of its key', async (assert) => {
    const { barrier } = make(db.url, 'key');
    const key = costLockKey('alice').toString();
    const seen = await within(TEST_MS, barrier.withUserCostLock('alice', async ({ client }) => {
      const inTx = await client.query<{ now: Date; stmt: Date }>('select now(), statement_timestamp() as stmt');
      await sleep(5);
      const again = await client.query<{ now: Date }>('select now()');
      return { locks: await advisoryLocks(db.pool), sameTx: inTx.rows[0]!.now.getTime() === again.rows[0]!.now.getTime() };
    }));
    assert.true(seen.sameTx, 'fn ran inside one transaction');
    assert.deepEqual(seen.locks.filter((l) => l.key === key).map((l) => [l.granted, l.twoInt4]), [[true, false]]);
    assert.deepEqual(await advisoryLocks(db.pool), [], 'released after commit');
    assert.deepEqual(counters(barrier), IDLE);
  });

  QUnit.test('same-user callers serialize in call order with no interleaving (N=8)', async (assert) => {
    const { barrier } = make(db.url, 'serial');
    const events: string[] = [];
    let inside = 0;
    let maxInside = 0;
    const seen: Array<{ pinned: number; queued: number }> = [];
    const calls = Array.from({ length: 8 }, (_, i) => barrier.withUserCostLock('alice', async () => {
      inside += 1;
      maxInside = Math.max(maxInside, inside);
      seen.push({ pinned: barrier.pinned, queued: barrier.queued });
      events.push(`start ${i}`);
      await sleep(15 + ((i * 7) % 20));
      events.push(`end ${i}`);
      inside -= 1;
      return { caller: i };
    }));
    const results = await within(TEST_MS, Promise.all(calls));
    assert.deepEqual(results, Array.from({ length: 8 }, (_, i) => ({ caller: i })), 'each caller gets its own result');
    assert.deepEqual(events, Array.from({ length: 8 }, (_, i) => [`start ${i}`, `end ${i}`]).flat());
    assert.strictEqual(maxInside, 1);
    // Only the head pins a client; the others wait in memory, one fewer at each turn.
    assert.deepEqual(seen, Array.from({ length: 8 }, (_, i) => ({ pinned: 1, queued: 7 - i })));
    assert.deepEqual(counters(barrier), IDLE);
  });

  QUnit.test('different users run in parallel', async (assert) => {
    const { barrier } = make(db.url, 'parallel');
    const holdMs = 300;
    await barrier.withUserCostLock('warmup', async () => undefined); // connect outside the timing
    await Promise.all([barrier.withUserCostLock('w2', async () => undefined), barrier.withUserCostLock('w3', async () => undefined)]);
    const began = now();
    const spans = await within(TEST_MS, Promise.all(['alice', 'bob'].map((user) => barrier.withUserCostLock(user, async () => {
      const start = now();
      await sleep(holdMs);
      return { start, end: now() };
    }))));
    const total = now() - began;
    assert.true(overlaps(spans), 'the two users held their locks at the same time');
    assert.true(total < holdMs * 2 - 50, `both finished in ${total.toFixed(0)} ms (< ${holdMs * 2 - 50})`);
    assert.deepEqual(counters(barrier), IDLE);
  });

  QUnit.test('a throwing callback releases the lock, gets its own error and does not poison the chain', async (assert) => {
    const { barrier } = make(db.url, 'throw');
    const errors = [new Error('first'), new Error('third')];
    const calls: Array<Promise<unknown>> = [
      barrier.withUserCostLock('alice', async () => { throw errors[0]; }),
      barrier.withUserCostLock('alice', async () => 'second'),
      barrier.withUserCostLock('alice', async ({ client }) => {
        // Abort the transaction with a real SQL error before throwing: rollback must still work.
        await client.query('select 1/0').catch(() => undefined);
        throw errors[1];
      }),
      barrier.withUserCostLock('alice', async ({ client }) => (await client.query<{ v: number }>('select 4 as v')).rows[0]!.v),
    ];
    const outcomes = await within(TEST_MS, Promise.all(calls.map(settle)));
    assert.true(!outcomes[0]!.ok && outcomes[0]!.error === errors[0], 'first caller gets exactly its own error');
    assert.deepEqual(outcomes[1], { ok: true, value: 'second' });
    assert.true(!outcomes[2]!.ok && outcomes[2]!.error === errors[1], 'third caller gets exactly its own error');
    assert.deepEqual(outcomes[3], { ok: true, value: 4 });
    assert.deepEqual(await advisoryLocks(db.pool), [], 'no advisory lock left in pg_locks');
    // A caller from another replica proceeds at once: the lock is really gone.
    const other = make(db.url, 'throw-other', { lockTimeoutMs: 500 });
    assert.strictEqual(await within(5_000, other.barrier.withUserCostLock('alice', async () => 'free')), 'free');
    assert.deepEqual(counters(barrier), IDLE);
    const idle = await db.pool.query<{ n: number }>(
      `select count(*)::integer as n from pg_stat_activity where application_name = $1::text and state like 'idle in transaction%'`,
      ['mgtest-throw:lock'],
    );
    assert.strictEqual(idle.rows[0]!.n, 0, 'no lock client left idle in a transaction');
  });

  QUnit.test('the queue map never leaks after bursts with failures and timeouts', async (assert) => {
    const { barrier } = make(db.url, 'leak', { queueWaitMs: 150, queueDepthMax: 4, lockPoolSize: 3, acquireTimeoutMs: 2_000 });
    const users = ['u1', 'u2', 'u3', 'u4', 'u5'];
    const reasons = new Map<string, number>();
    for (let round = 0; round < 3; round += 1) {
      const calls = users.flatMap((user, u) => Array.from({ length: 7 }, (_, i) => barrier.withUserCostLock(user, async () => {
        await sleep(10 + ((u + i) % 4) * 15);
        if ((u + i + round) % 3 === 0) throw new Error(`fail ${user} ${i}`);
        return i;
      })));
      const outcomes = await within(TEST_MS, Promise.all(calls.map(settle)));
      for (const outcome of outcomes) {
        const reason = outcome.ok ? 'ok' : outcome.error instanceof BarrierBusyError ? outcome.error.reason : 'thrown';
        reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
      }
      assert.deepEqual(counters(barrier), IDLE, `round ${round}: idle afterwards`);
    }
    // The burst really exercised every path (otherwise this test could not fail).
    for (const reason of ['ok', 'thrown', 'queue_timeout', 'queue_full']) {
      assert.true((reasons.get(reason) ?? 0) > 0, `${reason}: ${reasons.get(reason) ?? 0}`);
    }
    assert.deepEqual(await advisoryLocks(db.pool), []);
  });

  QUnit.test('queue_timeout: a waiter gives up with BarrierBusyError and ordering is kept', async (assert) => {
    const queueWaitMs = 500;
    const { barrier } = make(db.url, 'qtimeout', { queueWaitMs });
    const spans: Record<string, { start: number; end: number }> = {};
    const span = (name: string, ms: number) => async () => {
      const start = now();
      await sleep(ms);
      spans[name] = { start, end: now() };
      return name;
    };
    const began = now();
    const first = barrier.withUserCostLock('alice', span('first', 800));
    const second = settle(barrier.withUserCostLock('alice', span('second', 10)));
    await sleep(550); // the second caller has given up by now; the first still holds
    const third = barrier.withUserCostLock('alice', span('third', 10));
    const outcome = await within(TEST_MS, second);
    const gaveUpAfter = now() - began;
    assert.strictEqual(busyReason(outcome), 'queue_timeout');
    assert.true(!outcome.ok && outcome.error instanceof BarrierBusyError && outcome.error.retryAfterS >= 1, 'carries Retry-After');
    assert.true(gaveUpAfter >= queueWaitMs - 20, `gave up after ${gaveUpAfter.toFixed(0)} ms`);
    assert.strictEqual(await within(TEST_MS, first), 'first');
    assert.strictEqual(await within(TEST_MS, third), 'third');
    assert.strictEqual(spans.second, undefined, 'the timed-out caller never ran');
    assert.true(spans.third!.start >= spans.first!.end, 'the caller behind the one that gave up still waited for the holder');
    assert.deepEqual(counters(barrier), IDLE);
  });

  QUnit.test('queue_full: callers beyond queueDepthMax are turned away at once, the rest keep order', async (assert) => {
    const { barrier } = make(db.url, 'qfull', { queueDepthMax: 2 });
    const order: number[] = [];
    const call = (i: number) => barrier.withUserCostLock('alice', async () => {
      order.push(i);
      await sleep(i === 0 ? 300 : 10);
      return i;
    });
    const admitted = [call(0), call(1), call(2)];
    const began = now();
    const refused = await settle(call(3));
    assert.strictEqual(busyReason(refused), 'queue_full');
    assert.true(now() - began < 100, 'refused without waiting');
    assert.deepEqual(await within(TEST_MS, Promise.all(admitted)), [0, 1, 2]);
    assert.deepEqual(order, [0, 1, 2]);
    assert.strictEqual(await call(4), 4, 'admitted again once the queue drained');
    assert.deepEqual(counters(barrier), IDLE);
  });

  QUnit.test('lock_timeout: another replica holding the user answers BarrierBusyError(lock_timeout)', async (assert) => {
    const a = make(db.url, 'lt-a');
    const b = make(db.url, 'lt-b', { lockTimeoutMs: 300 });
    const hold = await holdLock(a.barrier, 'alice');
    const began = now();
    const outcome = await within(TEST_MS, settle(b.barrier.withUserCostLock('alice', async () => 'ran')));
    const waited = now() - began;
    assert.strictEqual(busyReason(outcome), 'lock_timeout');
    assert.true(waited >= 280 && waited < 2_000, `waited ${waited.toFixed(0)} ms`);
    assert.deepEqual(counters(b.barrier), IDLE, 'the refused caller released its client');
    hold.release();
    assert.strictEqual(await within(TEST_MS, hold.done), 'held');
    assert.strictEqual(await within(TEST_MS, b.barrier.withUserCostLock('alice', async () => 'ran')), 'ran', 'the same client works afterwards');
  });

  QUnit.test('a statement_timeout shorter than lock_timeout still answers BarrierBusyError, not a raw SQL error', async (assert) => {
    const a = make(db.url, 'st-a');
    const b = make(db.url, 'st-b', { statementTimeoutMs: 300, lockTimeoutMs: 2_000 });
    const hold = await holdLock(a.barrier, 'alice');
    try {
      const outcome = await within(TEST_MS, settle(b.barrier.withUserCostLock('alice', async () => 'ran')));
      assert.strictEqual(busyReason(outcome), 'lock_timeout');
      assert.deepEqual(counters(b.barrier), IDLE);
    } finally {
      hold.release();
      await within(TEST_MS, hold.done);
    }
  });

  QUnit.test('pool_timeout: lock pool exhausted by other users answers within about acquireTimeoutMs', async (assert) => {
    const acquireTimeoutMs = 300;
    const { barrier } = make(db.url, 'pt', { lockPoolSize: 2, acquireTimeoutMs });
    const holds = [await holdLock(barrier, 'alice'), await holdLock(barrier, 'bob')];
    assert.strictEqual(barrier.pinned, 2);
    const began = now();
    const outcome = await within(TEST_MS, settle(barrier.withUserCostLock('carol', async () => 'ran')));
    const waited = now() - began;
    assert.strictEqual(busyReason(outcome), 'pool_timeout');
    assert.true(waited >= acquireTimeoutMs - 20 && waited < acquireTimeoutMs + 500, `answered after ${waited.toFixed(0)} ms`);
    for (const hold of holds) hold.release();
    await within(TEST_MS, Promise.all(holds.map((h) => h.done)));
    assert.strictEqual(await within(TEST_MS, barrier.withUserCostLock('carol', async () => 'ran')), 'ran');
    assert.deepEqual(counters(barrier), IDLE);
    // The client that arrived late for the timed-out acquire went back to the pool.
    assert.strictEqual(await eventually(async () => barrier_idle(db, 'mgtest-pt:lock'), (n) => n === 0, 5_000), 0);
  });

  QUnit.test('the cost key does not contend with two-int4 locks or other bigint namespaces (but does with itself)', async (assert) => {
    const { barrier } = make(db.url, 'ns', { lockTimeoutMs: 300 });
    const key = costLockKey('alice');
    const high = Number(BigInt.asIntN(32, key >> 32n));
    const low = Number(BigInt.asIntN(32, key));
    const bareKey = (await db.pool.query<{ k: string }>(
      `select ('x' || left(encode(sha256(convert_to($1::text, 'UTF8')), 'hex'), 16))::bit(64)::bigint::text as k`, ['alice'],
    )).rows[0]!.k;
    const outsider = new pg.Client({ connectionString: db.url });
    await outsider.connect();
    try {
      // The migration lock, a two-int4 lock with the same 64 bits, and the bare-id bigint key.
      await outsider.query('select pg_advisory_lock($1::int4, $2::int4)', [0x4d475431, 1]);
      await outsider.query('select pg_advisory_lock($1::int4, $2::int4)', [high, low]);
      await outsider.query('select pg_advisory_lock($1::bigint)', [bareKey]);
      assert.notStrictEqual(bareKey, key.toString());
      const held = await advisoryLocks(db.pool);
      assert.strictEqual(held.filter((l) => l.granted).length, 3, 'the outsider holds three locks');
      assert.true(held.some((l) => l.twoInt4 && l.key === key.toString()), 'one of them has the same 64 bits in the int4 space');
      assert.strictEqual(await within(5_000, barrier.withUserCostLock('alice', async () => 'free')), 'free');
      // Positive control: the same bigint key does contend (so the test above could fail).
      await outsider.query('select pg_advisory_lock($1::bigint)', [key.toString()]);
      const outcome = await within(5_000, settle(barrier.withUserCostLock('alice', async () => 'ran')));
      assert.strictEqual(busyReason(outcome), 'lock_timeout');
    } finally {
      await outsider.end();
    }
    assert.deepEqual(counters(barrier), IDLE);
  });

  QUnit.test('two replicas serialize the same user, and only one backend per process waits', async (assert) => {
    const a = make(db.url, 'rep-a');
    const b = make(db.url, 'rep-b');
    const spans: Array<{ start: number; end: number; who: string }> = [];
    const work = (who: string) => async () => {
      const start = now();
      await sleep(30);
      spans.push({ start, end: now(), who });
      return who;
    };
    const calls = [0, 1, 2, 3].flatMap((i) => [
      a.barrier.withUserCostLock('alice', work(`a${i}`)), b.barrier.withUserCostLock('alice', work(`b${i}`)),
    ]);
    const results = await within(TEST_MS, Promise.all(calls));
    assert.deepEqual(results, [0, 1, 2, 3].flatMap((i) => [`a${i}`, `b${i}`]));
    assert.false(overlaps(spans), 'no two holders overlapped across replicas');
    assert.true(new Set(spans.map((s) => s.who[0])).size === 2, 'both replicas ran');

    // K=5 callers on A while B holds: A pins one client, one backend waits, four wait in memory.
    const hold = await holdLock(b.barrier, 'alice');
    const k = 5;
    const waiting = Array.from({ length: k }, (_, i) => a.barrier.withUserCostLock('alice', async () => i));
    const waiters = await eventually(
      async () => (await advisoryLocks(db.pool)).filter((l) => !l.granted),
      (locks) => locks.length >= 1, 5_000,
    );
    await sleep(200); // give any (wrong) extra waiter time to show up
    const after = (await advisoryLocks(db.pool)).filter((l) => !l.granted);
    assert.strictEqual(after.length, 1, 'exactly one waiting backend');
    assert.deepEqual(after.map((l) => l.app), [`${a.appName}:lock`], 'and it is replica A\'s lock client');
    assert.strictEqual(waiters[0]!.key, costLockKey('alice').toString());
    assert.deepEqual({ pinned: a.barrier.pinned, queued: a.barrier.queued }, { pinned: 1, queued: k - 1 });
    const aBackends = await db.pool.query<{ n: number }>('select count(*)::integer as n from pg_stat_activity where application_name = $1::text', [`${a.appName}:lock`]);
    assert.true(aBackends.rows[0]!.n <= 4, `replica A has ${aBackends.rows[0]!.n} lock backends (pool max 4)`);
    hold.release();
    assert.deepEqual(await within(TEST_MS, Promise.all(waiting)), [0, 1, 2, 3, 4]);
    assert.deepEqual(counters(a.barrier), IDLE);
    assert.deepEqual(counters(b.barrier), IDLE);
  });

  QUnit.test('a holder whose session is killed frees the lock at once; onHolderLost is called', async (assert) => {
    const lost: Array<{ userId: string; error: unknown }> = [];
    const a = make(db.url, 'kill-a', { onHolderLost: (error, userId) => lost.push({ error, userId }) });
    const b = make(db.url, 'kill-b');
    let release!: () => void;
    const gate = new Promise<void>((resolve) => { release = resolve; });
    let pid = 0;
    let started!: () => void;
    const holding = new Promise<void>((resolve) => { started = resolve; });
    const holderOutcome = settle(a.barrier.withUserCostLock('alice', async ({ client }) => {
      pid = (client as unknown as { processID: number }).processID;
      started();
      await within(TEST_MS, gate);
      return 'holder finished';
    }));
    await within(5_000, holding);
    let bStarted = 0;
    const waiter = b.barrier.withUserCostLock('alice', async () => { bStarted = now(); return 'waiter ran'; });
    await eventually(async () => (await advisoryLocks(db.pool)).filter((l) => !l.granted).length, (n) => n === 1, 5_000);
    assert.strictEqual(bStarted, 0, 'B waits while A holds');
    const killedAt = now();
    const killed = await db.pool.query<{ ok: boolean }>('select pg_terminate_backend($1::integer) as ok', [pid]);
    assert.true(killed.rows[0]!.ok);
    assert.strictEqual(await within(5_000, waiter), 'waiter ran');
    assert.true(bStarted - killedAt < 1_000, `B got the lock ${(bStarted - killedAt).toFixed(0)} ms after the kill`);
    release();
    const outcome = await within(TEST_MS, holderOutcome);
    assert.true(outcome.ok || outcome.error !== undefined, 'the holder\'s call settled');
    assert.deepEqual(lost.map((l) => l.userId), ['alice'], 'onHolderLost reported the lost lock');
    assert.deepEqual(counters(a.barrier), IDLE);
    // The broken client was destroyed, not returned: the next call on A works.
    assert.strictEqual(await within(5_000, a.barrier.withUserCostLock('alice', async ({ client }) =>
      (await client.query<{ v: number }>('select 7 as v')).rows[0]!.v)), 7);
  });

  QUnit.test('a holder outliving holdMsMax loses its session to Postgres; the process survives, others proceed', async (assert) => {
    const lost: string[] = [];
    const holdMsMax = 600;
    const a = make(db.url, 'hold-a', { holdMsMax, lockTimeoutMs: 300, onHolderLost: (_error, userId) => lost.push(userId) });
    const b = make(db.url, 'hold-b');
    const began = now();
    const holder = settle(a.barrier.withUserCostLock('alice', async () => {
      await sleep(holdMsMax * 2.5); // a hung upstream call: idle in transaction past the limit
      return 'late';
    }));
    await sleep(100);
    const waited = await within(TEST_MS, b.barrier.withUserCostLock('alice', async () => now() - began));
    assert.true(waited >= holdMsMax - 50 && waited < holdMsMax * 2.5, `the other replica got the lock after ${waited.toFixed(0)} ms`);
    await within(TEST_MS, holder);
    assert.deepEqual(lost, ['alice'], 'onHolderLost reported it');
    assert.deepEqual(counters(a.barrier), IDLE);
    assert.strictEqual(await within(5_000, a.barrier.withUserCostLock('alice', async () => 'again')), 'again', 'the dead client was not reused');
  });
});


QUnit.module('cost-barrier: one round trip to the lock', (hooks) => {
  let db: TestDatabase;
  hooks.before(async () => { db = await createTestDatabase(); });
  hooks.after(async () => { await db.drop(); });

  QUnit.test('the lock pool pipelines: BEGIN and the lock statement are both written before Postgres answers', async (assert) => {
    const r = replica(db.url, 'pipeline');
    try {
      assert.true((r.pools.lock as unknown as { options: { pipeline?: boolean } }).options.pipeline === true, 'lock pool pipelines');
      assert.false((r.pools.write as unknown as { options: { pipeline?: boolean } }).options.pipeline === true, 'write pool does not (CSV cursors)');
      // Warm a lock client up (connection and statement preparation), then watch its socket.
      await r.barrier.withUserCostLock('warm', async () => 'warm');
      const wire: string[] = [];
      r.pools.lock.once('acquire', (client) => {
        const stream = (client as unknown as { connection: { stream: NodeJS.ReadWriteStream & { write: (...args: unknown[]) => boolean } } }).connection.stream;
        const write = stream.write.bind(stream);
        stream.write = (...args: unknown[]) => { wire.push('write'); return write(...args); };
        stream.once('data', () => wire.push('read'));
      });
      await r.barrier.withUserCostLock('piped', async () => { wire.push('locked'); });
      const firstRead = wire.indexOf('read');
      assert.true(firstRead >= 2 && wire.slice(0, firstRead).every((event) => event === 'write'),
        `begin and lock written before the first answer: ${wire.join(', ')}`);
    } finally {
      await r.pools.end();
    }
  });
});

QUnit.module('cost-barrier: commitWith ends the lock transaction with its statement', (hooks) => {
  let db: TestDatabase;
  hooks.before(async () => {
    db = await createTestDatabase();
    await db.pool.query('create table commit_with_probe (n integer not null check (n > 0))');
  });
  hooks.after(async () => { await db.drop(); });

  QUnit.test('the statement and the lock release land in one commit; a failing statement is rolled back and the lock freed', async (assert) => {
    const r = replica(db.url, 'commitwith');
    const key = costLockKey('cw').toString();
    const heldBy = async (): Promise<number> => (await advisoryLocks(db.pool)).filter((l) => l.key === key && l.granted).length;
    try {
      const seen: string[] = [];
      await r.barrier.withUserCostLock('cw', async (txn) => {
        const inserted = await txn.commitWith({ text: 'insert into commit_with_probe (n) values ($1::integer) returning n', values: [7] });
        seen.push(`returned ${inserted.rows[0]?.n}`);
        // Committed already: another session sees the row, and the user's lock is free.
        const visible = await db.pool.query('select 1 from commit_with_probe where n = 7');
        seen.push(`visible ${visible.rowCount}`, `locks ${await heldBy()}`);
        await assert.rejects(txn.commitWith({ text: 'select 1' }), /already ended/, 'at most once');
      });
      assert.deepEqual(seen, ['returned 7', 'visible 1', 'locks 0'], 'committed with the lock released, before fn returned');

      const failed = await settle(r.barrier.withUserCostLock('cw', async (txn) => {
        await txn.commitWith({ text: 'insert into commit_with_probe (n) values ($1::integer)', values: [-1] });
      }));
      assert.false(failed.ok, 'the statement error is thrown');
      assert.strictEqual(await heldBy(), 0, 'lock released');
      const rows = await db.pool.query<{ n: number }>('select count(*)::integer as n from commit_with_probe');
      assert.strictEqual(rows.rows[0]?.n, 1, 'the failed statement left nothing');
      // The client went back to the pool in a clean state: the next holder works.
      assert.strictEqual(await r.barrier.withUserCostLock('cw', async ({ client }) => (await client.query<{ n: number }>('select 2 as n')).rows[0]?.n), 2);
      assert.deepEqual(counters(r.barrier), { activeUsers: 0, queued: 0, pinned: 0 }, 'nothing leaked');
    } finally {
      await r.pools.end();
    }
  });
});

async function barrier_idle(db: TestDatabase, app: string): Promise<number> {
  const result = await db.pool.query<{ n: number }>(
    `select count(*)::integer as n from pg_stat_activity where application_name = $1::text and state <> 'idle'`, [app]);
  return result.rows[0]!.n;
}
