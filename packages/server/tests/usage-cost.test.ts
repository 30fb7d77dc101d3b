// The cost of a call from OpenRouter's usage object or /generation data, BYOK included: each
// float converted once to nano-USD, the parts added as integers, nothing guessed.
import { costFromGeneration, costFromUsage } from '../src/billing/usage-cost.js';

QUnit.module('usage cost', () => {
  QUnit.test('BYOK: the fee plus the provider charge, added exactly as integers', (assert) => {
    const cost = costFromUsage({ cost: 0.1, is_byok: true, cost_details: { upstream_inference_cost: 0.2 }, prompt_tokens: 3, completion_tokens: 4 },
      { model: 'openai/gpt-4o', provider: 'OpenAI' });
    // 0.1 + 0.2 in floats is 0.30000000000000004: the sum must be of the converted integers.
    assert.strictEqual(cost?.costNano.toString(), '300000000');
    assert.deepEqual([cost?.isByok, cost?.servedModel, cost?.provider, cost?.promptTokens, cost?.completionTokens], [true, 'openai/gpt-4o', 'OpenAI', 3, 4]);
  });

  QUnit.test('BYOK without a usable provider charge is unknown (looked up), never the fee alone', (assert) => {
    for (const details of [undefined, null, {}, { upstream_inference_cost: null }, { upstream_inference_cost: -1 }, { upstream_inference_cost: '0.2' }]) {
      assert.strictEqual(costFromUsage({ cost: 0.01, is_byok: true, cost_details: details }), null, JSON.stringify(details));
    }
  });

  QUnit.test('not BYOK: cost as reported, upstream_inference_cost ignored; is_byok only when said', (assert) => {
    const plain = costFromUsage({ cost: 0.000045, is_byok: false, cost_details: { upstream_inference_cost: 9 } });
    assert.deepEqual([plain?.costNano.toString(), plain?.isByok, plain?.servedModel], ['45000', false, null]);
    assert.strictEqual(costFromUsage({ cost: 0.000045 })?.isByok, null, 'unknown when absent');
    assert.strictEqual(costFromUsage({ cost: 1 }, { model: '', provider: 'x'.repeat(513) })?.servedModel, null, 'an empty name is no name');
    assert.strictEqual(costFromUsage({ cost: 1 }, { provider: 'x'.repeat(513) })?.provider, null, 'nor an absurdly long one');
  });

  QUnit.test('/generation: total_cost + upstream_inference_cost with BYOK; model and provider_name', (assert) => {
    const byok = costFromGeneration({ total_cost: 0.00000105, upstream_inference_cost: 0.000021, is_byok: true, model: 'm/x', provider_name: 'P', tokens_prompt: 1, tokens_completion: 2 });
    assert.deepEqual([byok?.costNano.toString(), byok?.servedModel, byok?.provider, byok?.isByok], ['22050', 'm/x', 'P', true]);
    const plain = costFromGeneration({ total_cost: 0.000021, upstream_inference_cost: null, is_byok: false });
    assert.strictEqual(plain?.costNano.toString(), '21000');
    assert.strictEqual(costFromGeneration({ total_cost: 0.000001, upstream_inference_cost: null, is_byok: true }), null);
  });
});
