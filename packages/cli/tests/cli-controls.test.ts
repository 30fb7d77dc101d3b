// The CLI's controls commands as a real process: limits, webhooks, alerts, replay.
import { createTestDatabase, type TestDatabase } from '@metergate/testkit';
import { runCli, type CliResult } from './run-cli.js';

QUnit.module('cli: limits and webhooks', (hooks) => {
  let db: TestDatabase;
  let cli: (...args: string[]) => Promise<CliResult>;
  hooks.before(async () => {
    db = await createTestDatabase();
    cli = (...args) => runCli(args, { DATABASE_URL: db.url });
  });
  hooks.after(async () => { await db.drop(); });

  QUnit.test('limits set / show on a user and a key; bad input exits 2, unknown ids 3', async (assert) => {
    const created = await cli('users', 'create', 'lim', '--json');
    assert.strictEqual(created.code, 0, created.stderr);
    const keyId = (JSON.parse(created.stdout) as { key_id: string }).key_id;
    const set = await cli('limits', 'set', 'lim', '--spend', 'day=1.00', '--spend', 'month=20', '--rpm', '60', '--concurrent', '4', '--allow', 'openai/*,perplexity/sonar', '--json');
    assert.strictEqual(set.code, 0, set.stderr);
    const body = JSON.parse(set.stdout) as { spend: Array<{ period: string; amount_usd: string; spent_usd: string }>; requests_per_minute: number; concurrent_calls: number; models: unknown };
    assert.deepEqual(body.spend.map((s) => [s.period, s.amount_usd, s.spent_usd]), [['day', '1.000000000', '0.000000000'], ['month', '20.000000000', '0.000000000']]);
    assert.deepEqual([body.requests_per_minute, body.concurrent_calls, body.models], [60, 4, { allow: ['openai/*', 'perplexity/sonar'], deny: null }]);
    const cleared = await cli('limits', 'set', 'lim', '--rpm', 'none', '--spend', 'none', '--json');
    assert.strictEqual(cleared.code, 0, cleared.stderr);
    const after = JSON.parse(cleared.stdout) as { spend: unknown[]; requests_per_minute: number | null; concurrent_calls: number };
    assert.deepEqual([after.spend, after.requests_per_minute, after.concurrent_calls], [[], null, 4]);
    const key = await cli('limits', 'set', keyId, '--key', '--deny', 'openai/gpt-4o', '--json');
    assert.strictEqual(key.code, 0, key.stderr);
    assert.deepEqual((JSON.parse(key.stdout) as { models: unknown }).models, { allow: null, deny: ['openai/gpt-4o'] });
    const human = await cli('limits', 'show', 'lim');
    assert.true(human.code === 0 && human.stdout.includes('openai/*'), human.stdout);
    assert.strictEqual((await cli('limits', 'set', 'lim', '--spend', 'hour=1')).code, 2);
    assert.strictEqual((await cli('limits', 'set', 'lim', '--allow', 'open*ai')).code, 2);
    assert.strictEqual((await cli('limits', 'set', 'lim', '--rpm', '0')).code, 2);
    assert.strictEqual((await cli('limits', 'show', 'nobody')).code, 3);
    assert.strictEqual((await cli('limits', 'set', 'nokey', '--key', '--rpm', '5')).code, 3);
  });

  QUnit.test('webhooks create / list / alert; an event given up is replayed with the same id', async (assert) => {
    const created = await cli('webhooks', 'create', 'http://127.0.0.1:9/hook', '--secret', 'whsec-cli-0123456789', '--events', 'credits.granted,balance.low', '--json');
    assert.strictEqual(created.code, 0, created.stderr);
    const hook = JSON.parse(created.stdout) as { id: string; events: string[] };
    assert.deepEqual(hook.events, ['credits.granted', 'balance.low']);
    const listed = JSON.parse((await cli('webhooks', 'list', '--json')).stdout) as Array<Record<string, unknown>>;
    assert.true(listed.some((h) => h.id === hook.id) && listed.every((h) => !('secret' in h)), 'listed, without secrets');
    assert.strictEqual((await cli('users', 'create', 'hooked', '--grant', '1.00')).code, 0);
    assert.strictEqual((await cli('webhooks', 'alert', 'hooked', '0.50')).code, 0);
    const { rows } = await db.pool.query<{ event_id: string; state: string }>('select event_id::text, state from webhook_deliveries where webhook_id = $1::text', [hook.id]);
    assert.strictEqual(rows.length, 1, 'the grant wrote one credits.granted delivery in its own statement');
    await db.pool.query(`update webhook_deliveries set state = 'failed', attempts = 50 where webhook_id = $1::text`, [hook.id]);
    const replay = await cli('webhooks', 'replay', rows[0]!.event_id);
    assert.strictEqual(replay.code, 0, replay.stderr);
    const again = await db.pool.query<{ state: string; attempts: number; event_id: string }>('select state, attempts, event_id::text from webhook_deliveries where webhook_id = $1::text', [hook.id]);
    assert.deepEqual(again.rows.map((r) => [r.state, r.attempts, r.event_id]), [['pending', 0, rows[0]!.event_id]], 'pending again, same event');
    assert.strictEqual((await cli('webhooks', 'replay', '00000000-0000-0000-0000-000000000000')).code, 3);
    assert.strictEqual((await cli('webhooks', 'replay', 'not-a-uuid')).code, 2);
    assert.strictEqual((await cli('webhooks', 'create', 'ftp://x', '--secret', 'whsec-cli-0123456789', '--events', 'balance.low')).code, 2);
    assert.strictEqual((await cli('webhooks', 'delete', hook.id)).code, 0);
  });
});
