// The batching rule itself, without a database: what goes out at once, what waits and leaves
// together, groups kept apart, limits kept, and a failed batch answered item by item.
import { StatementBatcher, type BatchStatement } from '../src/billing/statement-batcher.js';

interface Gate { open(): void; promise: Promise<void> }

function gate(): Gate {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => { open = resolve; });
  return { open, promise };
}

/** A fake statement: records each call's items; each call waits until the test opens its gate. */
function recorder(options: { failMany?: boolean; failOne?: (n: number) => boolean } = {}) {
  const calls: Array<{ kind: 'many' | 'one'; items: number[]; gate: Gate }> = [];
  const failures: Array<{ size: number }> = [];
  const sizes: number[] = [];
  const statement: BatchStatement<number, string> = {
    async many(items) {
      const g = gate();
      calls.push({ kind: 'many', items, gate: g });
      await g.promise;
      if (options.failMany === true) throw new Error('batch refused');
      return items.map((n) => `ok ${n}`);
    },
    async one(item) {
      const g = gate();
      calls.push({ kind: 'one', items: [item], gate: g });
      await g.promise;
      if (options.failOne?.(item) === true) throw new Error(`refused ${item}`);
      return `ok ${item}`;
    },
    group: (n) => (n >= 100 ? 'big' : 'small'),
    batchFailed: (_error, size) => { failures.push({ size }); },
    sent: (size) => { sizes.push(size); },
  };
  return { calls, failures, sizes, statement };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

QUnit.module('statement batcher', () => {
  QUnit.test('goes out at once when a slot is free; later items wait and leave together, by group, within batchMax', async (assert) => {
    const { calls, sizes, statement } = recorder();
    const batcher = new StatementBatcher(statement, { batchMax: 3, batchesInFlightMax: 1 });
    const results = [1, 2, 3, 4, 100, 5, 101].map((n) => batcher.submit(n));
    await tick();
    assert.deepEqual(calls.map((c) => c.items), [[1]], 'the first at once, alone');
    assert.strictEqual(batcher.waiting, 6);
    calls[0]!.gate.open();
    await tick(); await tick();
    assert.deepEqual(calls.map((c) => [c.kind, c.items]), [['one', [1]], ['many', [2, 3, 4]]], 'then the oldest of its group, at most 3');
    calls[1]!.gate.open();
    await tick(); await tick();
    assert.deepEqual(calls[2]!.items, [100, 101], 'then the oldest waiting item\'s group: the "big" ones together');
    calls[2]!.gate.open();
    await tick(); await tick();
    assert.deepEqual(calls[3]!.items, [5]);
    calls[3]!.gate.open();
    assert.deepEqual(await Promise.all(results), ['ok 1', 'ok 2', 'ok 3', 'ok 4', 'ok 100', 'ok 5', 'ok 101']);
    assert.deepEqual(sizes, [1, 3, 2, 1], 'each statement\'s size reported (the metric)');
  });

  QUnit.test('batchesInFlightMax statements at once, never more', async (assert) => {
    const { calls, statement } = recorder();
    const batcher = new StatementBatcher(statement, { batchMax: 10, batchesInFlightMax: 2 });
    const results = Array.from({ length: 6 }, (_, i) => batcher.submit(i));
    await tick();
    assert.deepEqual(calls.map((c) => c.items), [[0], [1]], 'two alone at once');
    calls[1]!.gate.open();
    await tick(); await tick();
    assert.deepEqual(calls.map((c) => c.items), [[0], [1], [2, 3, 4, 5]], 'a freed slot takes everything waiting');
    for (const c of calls) c.gate.open();
    assert.strictEqual((await Promise.all(results)).length, 6);
  });

  QUnit.test('a failed batch: told once, then every item alone; only the refused one fails', async (assert) => {
    const { calls, failures, statement } = recorder({ failMany: true, failOne: (n) => n === 3 });
    const batcher = new StatementBatcher(statement, { batchMax: 10, batchesInFlightMax: 1 });
    const results = [1, 2, 3, 4].map((n) => batcher.submit(n).then((ok) => ok, (error: Error) => error.message));
    await tick();
    calls[0]!.gate.open();
    await tick(); await tick();
    calls[1]!.gate.open();
    await tick(); await tick();
    assert.deepEqual(failures, [{ size: 3 }]);
    for (const c of calls.slice(2)) c.gate.open();
    assert.deepEqual(await Promise.all(results), ['ok 1', 'ok 2', 'refused 3', 'ok 4']);
    assert.deepEqual(calls.map((c) => [c.kind, c.items]), [['one', [1]], ['many', [2, 3, 4]], ['one', [2]], ['one', [3]], ['one', [4]]]);
  });

  QUnit.test('a batch answering the wrong number of items rejects them all, never resolves one wrongly', async (assert) => {
    const statement: BatchStatement<number, number> = {
      many: (items) => Promise.resolve(items.slice(1)),
      one: (n) => new Promise((resolve) => setTimeout(() => resolve(n), 20)),
      group: () => 'g',
      batchFailed: () => undefined,
    };
    const batcher = new StatementBatcher(statement, { batchMax: 10, batchesInFlightMax: 1 });
    const results = await Promise.allSettled([1, 2, 3].map((n) => batcher.submit(n)));
    assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'rejected', 'rejected']);
  });
});
