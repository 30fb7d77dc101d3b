// The simulator's other endpoints (../shared/openrouter-endpoints.md): each endpoint's framing
// on the wire, and the same books as chat.
import { startSimulator, type Simulator } from '../src/index.js';
import { authHeaders, API_KEY, type Chunk } from './helpers.js';

function post(sim: Simulator, path: string, body: unknown): Promise<Response> {
  return fetch(`${sim.url}${path}`, { method: 'POST', headers: authHeaders(), body: JSON.stringify(body) });
}

/** Blocks between blank lines, each as its `event:` name (or null) and its `data:` text. */
function frames(text: string): Array<{ event: string | null; data: string }> {
  return text.split('\n\n').filter((block) => block !== '' && !block.startsWith(':')).map((block) => {
    const lines = block.split('\n');
    const event = lines.find((line) => line.startsWith('event: '))?.slice(7) ?? null;
    return { event, data: lines.find((line) => line.startsWith('data: '))!.slice(6) };
  });
}

QUnit.module('simulator: other endpoints', (hooks) => {
  let sim: Simulator;
  hooks.before(async () => { sim = await startSimulator({ apiKey: API_KEY, lookup404Ms: 0 }); });
  hooks.after(async () => { await sim.close(); });
  hooks.beforeEach(() => sim.reset());

  QUnit.test('/messages streams named events; cumulative usage on message_delta without cost; ends at message_stop', async (assert) => {
    const response = await post(sim, '/messages', {
      model: 'anthropic/claude-sonnet-4', max_tokens: 100, stream: true, user: 'u', messages: [{ role: 'user', content: 'hello there' }], sim: { completion_tokens: 5 },
    });
    assert.strictEqual(response.status, 200);
    const all = frames(await response.text());
    assert.deepEqual(all.map((f) => f.event), ['message_start', 'content_block_start', 'ping', ...Array(5).fill('content_block_delta'),
      'content_block_stop', 'message_delta', 'message_stop']);
    assert.true(all.every((f) => (JSON.parse(f.data) as Chunk)['type'] === f.event), 'data.type names the event');
    const delta = JSON.parse(all.at(-2)!.data) as Chunk;
    const record = sim.generations()[0]!;
    assert.deepEqual([delta['usage'].output_tokens, delta['usage'].input_tokens, 'cost' in delta['usage']], [5, record.promptTokens, false]);
    assert.strictEqual(record.completionTokens, 5);
    assert.strictEqual(sim.billedNano().toString(), (BigInt(record.promptTokens) * 3_000n + 5n * 15_000n).toString());
  });

  QUnit.test('/messages: errors in Anthropic\'s shape, the status as steered', async (assert) => {
    const response = await post(sim, '/messages', { model: 'anthropic/claude-sonnet-4', max_tokens: 10, messages: [{ role: 'user', content: 'x' }], sim: { error_before: { status: 429 } } });
    assert.strictEqual(response.status, 429);
    const body = await response.json() as Chunk;
    assert.deepEqual([body['type'], body['error'].type, body['request_id']], ['error', 'rate_limit_error', response.headers.get('x-generation-id')]);
    assert.strictEqual(sim.billedNano().toString(), '0');
  });

  QUnit.test('/responses streams typed data events numbered from 0, usage with cost on response.completed, then [DONE]', async (assert) => {
    const response = await post(sim, '/responses', { model: 'openai/gpt-4o', input: 'hello there', stream: true, sim: { completion_tokens: 4 } });
    const all = frames(await response.text());
    assert.true(all.every((f) => f.event === null), 'no event: lines');
    assert.strictEqual(all.at(-1)!.data, '[DONE]');
    const events = all.slice(0, -1).map((f) => JSON.parse(f.data) as Chunk);
    assert.deepEqual(events.map((e) => e['sequence_number']), events.map((_e, index) => index));
    const completed = events.at(-1)!;
    assert.strictEqual(completed['type'], 'response.completed');
    const usage = completed['response'].usage as Chunk;
    assert.strictEqual(Math.round(usage['cost'] * 1e9).toString(), sim.billedNano().toString(), 'usage.cost = the books');
    assert.deepEqual([usage['output_tokens'], typeof usage['cost_details'].upstream_inference_prompt_cost], [4, 'number']);
    assert.notStrictEqual(completed['response'].id, response.headers.get('x-generation-id'), 'body ids are not the generation id');
  });

  QUnit.test('/responses: max_output_tokens ends it incomplete; store: true is a 400', async (assert) => {
    const short = await (await post(sim, '/responses', { model: 'openai/gpt-4o', input: 'hi', max_output_tokens: 3, sim: { completion_tokens: 9 } })).json() as Chunk;
    assert.deepEqual([short['status'], short['incomplete_details'].reason, short['usage'].output_tokens], ['incomplete', 'max_output_tokens', 3]);
    const stored = await post(sim, '/responses', { model: 'openai/gpt-4o', input: 'hi', store: true });
    assert.strictEqual(stored.status, 400);
    await stored.text();
  });

  QUnit.test('/embeddings: vectors (base64 as the OpenAI SDK asks), billed per input token; listed only with output_modalities', async (assert) => {
    const response = await post(sim, '/embeddings', { model: 'openai/text-embedding-3-small', input: ['abcdefgh', 'abcd'], encoding_format: 'base64' });
    const body = await response.json() as Chunk;
    assert.strictEqual(body['data'].length, 2);
    const vector = new Float32Array(Uint8Array.from(Buffer.from(body['data'][0].embedding as string, 'base64')).buffer);
    assert.strictEqual(vector.length, 8);
    assert.deepEqual([body['usage'].prompt_tokens, sim.billedNano().toString()], [3, (3n * 20n).toString()]);
    const text = await (await fetch(`${sim.url}/models`, { headers: authHeaders() })).json() as Chunk;
    const all = await (await fetch(`${sim.url}/models?output_modalities=all`, { headers: authHeaders() })).json() as Chunk;
    const ids = (listing: Chunk) => (listing['data'] as Chunk[]).map((m) => m['id'] as string);
    assert.false(ids(text).includes('openai/text-embedding-3-small'));
    assert.true(ids(all).includes('openai/text-embedding-3-small') && ids(all).includes('openai/gpt-4o'));
  });
});
