// What the reconciler cannot settle ends in an explicit, listed state with its reason, never
// silently: the owner died before any generation id was known, or the lookup never answered.
import { ledger, requests } from '@metergate/db';
import { eventually, scrapeMetric, type GenerationRecord } from '@metergate/testkit';
import {
  assertBooks, chatBody, post, requestsOf, startFixture, streamUntil, WAIT_MS, type Fixture,
} from './reliability-helpers.js';

const ATTEMPTS = 3;

/** What an operator does with an unresolved request once the upstream's books name its cost. */
async function operatorSettles(f: Fixture, requestId: string, generation: GenerationRecord): Promise<void> {
  const entry = await ledger.settleUsage(f.db.pool, {
    requestId, upstreamCostNano: generation.costNano, generationId: generation.id,
    promptTokens: generation.promptTokens, completionTokens: generation.completionTokens,
  });
  if (entry === null) throw new Error(`request ${requestId} was not open`);
}

QUnit.module('reliability: unresolved requests are explicit', (hooks) => {
  let f: Fixture;
  hooks.before(async () => { f = await startFixture(); });
  hooks.after(async () => { await f?.close(); });

  QUnit.test('kill -9 before the generation id is known: unresolved, reason owner_died_before_generation_id, listed', async (assert) => {
    const env = { RECONCILE_ATTEMPTS_MAX: String(ATTEMPTS) };
    const victim = await f.spawn(env);
    const survivor = await f.spawn(env);
    const key = await f.createUser(survivor, 'early');
    // Non-streaming: the generation id comes with the response, after the latency.
    const pending = post(victim.url, key, chatBody({ latency_ms: 1_500, completion_tokens: 4 }, false)).then(() => null, (e: unknown) => e);
    await eventually(async () => f.sim.generations().filter((g) => g.user === 'early'), (gens) => gens.length === 1, WAIT_MS);
    const [row] = await requestsOf(f.db, 'early');
    assert.strictEqual(row?.state, 'in_flight', 'the upstream is generating; the request is in flight');
    assert.strictEqual(row?.generation_id, null, 'with no generation id known yet');
    victim.kill('SIGKILL');
    await victim.exited;
    assert.notStrictEqual(await pending, null, 'the client saw the connection fail');

    const [closed] = await eventually(() => requestsOf(f.db, 'early'), (rows) => rows[0]?.state === 'unresolved', WAIT_MS);
    assert.strictEqual(closed?.reason, 'owner_died_before_generation_id');
    const listed = await requests.listByState(f.db.pool, 'unresolved', 10);
    assert.deepEqual(listed.map((r) => [r.id, r.reason]), [[row!.id, 'owner_died_before_generation_id']], 'operators can list it with its reason');
    // The gauge is a background snapshot (METRICS_REFRESH_MS, 5 s by default): it shows it by the next refresh.
    const gauge = await eventually(() => scrapeMetric(survivor.url, 'metergate_unsettled_requests', { state: 'unresolved' }), (n) => n >= 1, WAIT_MS);
    assert.true(gauge >= 1, 'the unsettled gauge shows it');

    // The upstream billed it in full (non-streaming ignores the client leaving): the gap is
    // exactly that generation, until an operator settles it from the upstream's books.
    await f.sim.whenIdle(WAIT_MS);
    const [generation] = f.sim.generations().filter((g) => g.user === 'early');
    await operatorSettles(f, row!.id, generation!);
    await assertBooks(assert, f, ['early']);
  });

  QUnit.test('the lookup never answers within the attempts: unresolved, reason cost_lookup_exhausted', async (assert) => {
    const replica = f.replicas.find((r) => r.child.exitCode === null && r.child.signalCode === null) ?? await f.spawn({ RECONCILE_ATTEMPTS_MAX: String(ATTEMPTS) });
    const key = await f.createUser(replica, 'never');
    const stream = await streamUntil(replica.url, key, chatBody({ completion_tokens: 3, omit_usage: true, lookup_404_ms: 600_000 }), 1);
    await stream.rest;
    const [row] = await eventually(() => requestsOf(f.db, 'never'), (rows) => rows[0]?.state === 'unresolved', WAIT_MS);
    assert.strictEqual(row?.reason, 'cost_lookup_exhausted', 'given up explicitly');
    assert.strictEqual(row?.lookup_attempts, ATTEMPTS, `after ${ATTEMPTS} reconciler attempts`);
    assert.true(await scrapeMetric(replica.url, 'metergate_reconciler_requests_total', { outcome: 'unresolved_exhausted' }) >= 1, 'counted');
    const [generation] = f.sim.generations().filter((g) => g.user === 'never');
    await operatorSettles(f, row!.id, generation!);
    await assertBooks(assert, f, ['never']);
  });
});
