import { createHash } from 'node:crypto';
import { COST_LOCK_NAMESPACE, costLockKey } from '@metergate/db';

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

QUnit.module('lock-key', () => {
  QUnit.test('deterministic: the same id always gives the same key', (assert) => {
    for (const id of ['alice', 'bob', 'a', 'user@example.com', 'ünïcödé', '']) {
      assert.strictEqual(costLockKey(id), costLockKey(id), id);
    }
    // Pinned independently of the implementation: first 8 bytes of SHA-256(namespace ‖ id).
    const expected = createHash('sha256').update(`${COST_LOCK_NAMESPACE}alice`).digest().readBigInt64BE(0);
    assert.strictEqual(costLockKey('alice'), expected);
  });

  QUnit.test('namespaced: differs from a hash of the bare id', (assert) => {
    assert.true(COST_LOCK_NAMESPACE.length > 0);
    for (const id of ['alice', 'bob', 'carol', '1', 'metergate']) {
      const bare = createHash('sha256').update(id).digest().readBigInt64BE(0);
      const bareUnsigned = createHash('sha256').update(id).digest().readBigUInt64BE(0);
      assert.notStrictEqual(costLockKey(id), bare, id);
      assert.notStrictEqual(costLockKey(id), bareUnsigned, id);
    }
  });

  QUnit.test('in the signed int64 range, both signs occur, distinct for many ids', (assert) => {
    const keys = new Set<bigint>();
    let negative = 0;
    const count = 20_000;
    for (let i = 0; i < count; i += 1) {
      const key = costLockKey(`user-${i}`);
      if (key < INT64_MIN || key > INT64_MAX) assert.ok(false, `out of range: ${key}`);
      if (key < 0n) negative += 1;
      keys.add(key);
    }
    assert.strictEqual(keys.size, count, 'no collisions');
    assert.true(negative > count * 0.4 && negative < count * 0.6, `signed reading: ${negative} negative of ${count}`);
    assert.notStrictEqual(costLockKey('alice'), costLockKey('Alice'), 'case-sensitive');
  });
});
