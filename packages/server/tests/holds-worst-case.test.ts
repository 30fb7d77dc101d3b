// The worst-case rule for holds (packages/server/src/holds/worst-case.ts) and the exact price
// parsing it relies on: pure functions, checked against hand-computed figures (the README's
// worked example is the first test).
import { attoToNanoCeil, formatAttoUsd, usdPriceToAtto, type ModelPrice } from '@metergate/db';
import {
  affordableBudget, clientBudget, defaultBudget, priceRequest, PROMPT_TOKENS_PER_IMAGE, PROMPT_TOKENS_PER_MESSAGE,
  PROMPT_TOKENS_PER_REQUEST, WEB_SEARCH_ATTO, worstCaseNano, type CostShape,
} from '../src/holds/worst-case.js';
import { parseModelsListing } from '../src/holds/models-listing.js';

function model(id: string, overrides: Partial<ModelPrice> = {}): ModelPrice {
  return {
    modelId: id, promptAtto: usdPriceToAtto('0.00000015'), completionAtto: usdPriceToAtto('0.0000006'), requestAtto: 0n,
    imageAtto: 0n, webSearchAtto: 0n, internalReasoningAtto: 0n, inputCacheReadAtto: 0n, inputCacheWriteAtto: 0n,
    contextLength: 128_000, maxCompletionTokens: 16_384, source: 'upstream', note: null, updatedAt: new Date(0), ...overrides,
  };
}

function bytesOf(body: Record<string, unknown>): bigint {
  return BigInt(Buffer.byteLength(JSON.stringify(body), 'utf8'));
}

function shapeOf(body: Record<string, unknown>, prices: ModelPrice[]): CostShape {
  const book = new Map(prices.map((p) => [p.modelId, p]));
  const priced = priceRequest(body, (id) => book.get(id));
  if (!priced.priced) throw new Error(priced.reason);
  return priced.shape;
}

QUnit.module('holds: worst-case cost', () => {
  QUnit.test('worked example (README): gpt-4o-mini, one message, max_tokens 1000', (assert) => {
    const body = { model: 'openai/gpt-4o-mini', max_tokens: 1000, messages: [{ role: 'user', content: 'Hello!' }] };
    const shape = shapeOf(body, [model('openai/gpt-4o-mini')]);
    const prompt = bytesOf(body) + PROMPT_TOKENS_PER_MESSAGE + PROMPT_TOKENS_PER_REQUEST;
    assert.strictEqual(shape.promptTokensBound.toString(), prompt.toString(), 'prompt bound = body bytes + 16 per message + 64');
    assert.strictEqual(prompt.toString(), '176', 'this body is 96 bytes');
    const budget = defaultBudget(shape)!;
    assert.strictEqual(budget.toString(), '1000', 'the client budget');
    // 176 × 150 nano + 1000 × 600 nano = 26,400 + 600,000 = 626,400 nano = $0.0006264
    assert.strictEqual(worstCaseNano(shape, budget).toString(), '626400');
  });

  QUnit.test('without max_tokens the model output limit is the budget; a client budget above it is capped', (assert) => {
    const prices = [model('m/a', { maxCompletionTokens: 4096 })];
    assert.strictEqual(defaultBudget(shapeOf({ model: 'm/a', messages: [{}] }, prices))!.toString(), '4096');
    assert.strictEqual(defaultBudget(shapeOf({ model: 'm/a', max_tokens: 9_999_999, messages: [{}] }, prices))!.toString(), '4096');
    assert.strictEqual(defaultBudget(shapeOf({ model: 'm/a', max_completion_tokens: 10, max_tokens: 99, messages: [{}] }, prices))!.toString(), '10',
      'max_completion_tokens wins over the deprecated max_tokens');
    const unlisted = shapeOf({ model: 'm/b', messages: [{ content: 'x' }] }, [model('m/b', { maxCompletionTokens: null, contextLength: 1000 })]);
    assert.strictEqual(defaultBudget(unlisted)!.toString(), (1000n - unlisted.promptTokensBound).toString(), 'context − prompt bound');
  });

  QUnit.test('reasoning.max_tokens is budgeted on top; price per output token is max(completion, internal_reasoning)', (assert) => {
    assert.strictEqual(clientBudget({ max_tokens: 100, reasoning: { max_tokens: 50 } })!.toString(), '150');
    const shape = shapeOf({ model: 'r/1', max_tokens: 10, messages: [{}] },
      [model('r/1', { completionAtto: 5n, internalReasoningAtto: usdPriceToAtto('0.00002') })]);
    assert.strictEqual(shape.completionAtto.toString(), usdPriceToAtto('0.00002').toString());
  });

  QUnit.test('images: left out of the byte count, each costs the image price plus an allowance of prompt tokens', (assert) => {
    const image = { type: 'image_url', image_url: { url: `data:image/png;base64,${'A'.repeat(50_000)}` } };
    const body = { model: 'v/1', messages: [{ role: 'user', content: [{ type: 'text', text: 'what is this' }, image, image] }] };
    const shape = shapeOf(body, [model('v/1', { imageAtto: usdPriceToAtto('0.001'), contextLength: 1_000_000 })]);
    assert.true(shape.promptTokensBound < 10_000n, 'the base64 bytes are not counted as text');
    assert.true(shape.promptTokensBound >= 2n * PROMPT_TOKENS_PER_IMAGE, 'each image adds its allowance');
    assert.true(shape.fixedAtto >= 2n * usdPriceToAtto('0.001'), 'each image adds the image price');
  });

  QUnit.test('web search (plugin, :online, server tool) bounds the prompt by the context and adds a fee per search', (assert) => {
    const prices = [model('s/1', { contextLength: 1000 })];
    const plain = shapeOf({ model: 's/1', messages: [{}] }, prices);
    const plugin = shapeOf({ model: 's/1', messages: [{}], plugins: [{ id: 'web' }] }, prices);
    assert.strictEqual(plugin.promptTokensBound.toString(), '1000', 'results add prompt tokens: bounded by the context');
    assert.true(plugin.fixedAtto >= plain.fixedAtto + WEB_SEARCH_ATTO, 'one search fee');
    const online = shapeOf({ model: 's/1:online', messages: [{}] }, prices);
    assert.true(online.fixedAtto >= WEB_SEARCH_ATTO, ':online is a search (base price looked up without the suffix)');
    const tool = shapeOf({ model: 's/1', messages: [{}], tools: [{ type: 'openrouter:web_search', parameters: { max_uses: 4 } }] }, prices);
    assert.true(tool.fixedAtto >= 4n * WEB_SEARCH_ATTO, 'the server tool searches up to max_uses times');
  });

  QUnit.test('a models fallback list is bounded by the dearest model; an unknown model is not priced', (assert) => {
    const cheap = model('c/1');
    const dear = model('d/1', { completionAtto: usdPriceToAtto('0.00006'), maxCompletionTokens: 100 });
    const shape = shapeOf({ models: ['c/1', 'd/1'], messages: [{}] }, [cheap, dear]);
    assert.strictEqual(shape.completionAtto.toString(), dear.completionAtto.toString());
    assert.strictEqual(shape.completionLimit!.toString(), '16384', 'the largest output limit among them');
    const book = new Map([[cheap.modelId, cheap]]);
    const missing = priceRequest({ models: ['c/1', 'x/unknown'], messages: [{}] }, (id) => book.get(id));
    assert.false(missing.priced, 'one unknown candidate makes the call unpriced');
    assert.false(priceRequest({ messages: [{}] }, () => cheap).priced, 'no model named: the account default is unknown');
  });

  QUnit.test('affordable budget: the largest whose worst case fits, never more than the limit', (assert) => {
    const shape = shapeOf({ model: 'm/a', messages: [{ content: 'hi' }] }, [model('m/a')]);
    for (const spare of [0n, 1n, 25_000n, 100_000n, 1_234_567n, 10_000_000_000n]) {
      const budget = affordableBudget(shape, spare);
      if (budget === null) {
        assert.true(attoToNanoCeil(shape.fixedAtto) > spare, `spare ${spare}: not even the prompt fits`);
        continue;
      }
      assert.true(worstCaseNano(shape, budget) <= spare, `spare ${spare}: budget ${budget} fits`);
      assert.true(budget === shape.completionLimit || worstCaseNano(shape, budget + 1n) > spare, `spare ${spare}: one more token would not fit`);
    }
  });

  QUnit.test('prices parse exactly into atto-USD, round up past 18 decimals, refuse "-1" and junk', (assert) => {
    assert.strictEqual(usdPriceToAtto('0.00000015').toString(), '150000000000');
    assert.strictEqual(usdPriceToAtto('0').toString(), '0');
    assert.strictEqual(usdPriceToAtto('1e-9').toString(), '1000000000');
    assert.strictEqual(usdPriceToAtto('0.0000000000000000001').toString(), '1', 'below one atto rounds up, never to zero');
    assert.strictEqual(formatAttoUsd(usdPriceToAtto('0.00000075')), '0.00000075');
    for (const bad of ['-1', '', 'abc', '1,5', '0x10', '1e400', '99999999']) {
      assert.throws(() => usdPriceToAtto(bad), Error, `refused: ${JSON.stringify(bad)}`);
    }
  });

  QUnit.test('a /models listing: every usable model kept exactly, unusable ones skipped and named', (assert) => {
    const listing = parseModelsListing({ data: [
      { id: 'a/1', context_length: 1000, top_provider: { max_completion_tokens: 100 }, pricing: { prompt: '0.000001', completion: '0.000002', request: '0.005' } },
      { id: 'openrouter/auto', pricing: { prompt: '-1', completion: '-1' } },
      { id: 'b/1', pricing: { prompt: 0.1, completion: '0' } },
    ] });
    assert.deepEqual(listing.prices.map((p) => p.modelId), ['a/1']);
    assert.deepEqual(listing.skipped.map((s) => s.modelId), ['openrouter/auto', 'b/1']);
    assert.strictEqual(listing.prices[0]!.requestAtto.toString(), usdPriceToAtto('0.005').toString());
    assert.strictEqual(listing.prices[0]!.maxCompletionTokens, 100);
  });
});
