// The cost of a call from OpenRouter's usage object or /generation data, BYOK included: each
// float converted once to nano-USD, the parts added as integers, nothing guessed; numbers out
// of range are rejected for an operator, never charged.
import { costFromGeneration, costFromUsage, isRejectedCost, type MeasuredCost, type UsageCost } from '../src/billing/usage-cost.js';

const MAX = 1_000n * 1_000_000_000n;

function measured(cost: UsageCost | null): MeasuredCost | null {
  if (cost !== null && isRejectedCost(cost)) throw new Error(`rejected: ${cost.raw}`);
  return cost;
}

QUnit.module('usage cost', () => {
  QUnit.test('BYOK: the fee plus the provider charge, added exactly as integers', (assert) => {
    const cost = measured(costFromUsage({ cost: 0.1, is_byok: true, cost_details: { upstream_inference_cost: 0.2 }, prompt_tokens: 3, completion_tokens: 4 },
      MAX, { model: 'openai/gpt-4o', provider: 'OpenAI' }));
    // 0.1 + 0.2 in floats is 0.30000000000000004: the sum must be of the converted integers.
    assert.strictEqual(cost?.costNano.toString(), '300000000');
    assert.deepEqual([cost?.isByok, cost?.servedModel, cost?.provider, cost?.promptTokens, cost?.completionTokens], [true, 'openai/gpt-4o', 'OpenAI', 3, 4]);
  });

  QUnit.test('BYOK without a provider charge is unknown (looked up), never the fee alone; a negative one is rejected', (assert) => {
    for (const details of [undefined, null, {}, { upstream_inference_cost: null }, { upstream_inference_cost: '0.2' }]) {
      assert.strictEqual(costFromUsage({ cost: 0.01, is_byok: true, cost_details: details }, MAX), null, JSON.stringify(details));
    }
    const negative = costFromUsage({ cost: 0.01, is_byok: true, cost_details: { upstream_inference_cost: -1 } }, MAX);
    assert.true(negative !== null && isRejectedCost(negative) && negative.raw === '0.01+-1', 'rejected with both numbers named');
  });

  QUnit.test('not BYOK: cost as reported, upstream_inference_cost ignored; is_byok only when said', (assert) => {
    const plain = measured(costFromUsage({ cost: 0.000045, is_byok: false, cost_details: { upstream_inference_cost: 9 } }, MAX));
    assert.deepEqual([plain?.costNano.toString(), plain?.isByok, plain?.servedModel], ['45000', false, null]);
    assert.strictEqual(measured(costFromUsage({ cost: 0.000045 }, MAX))?.isByok, null, 'unknown when absent');
    assert.strictEqual(measured(costFromUsage({ cost: 1 }, MAX, { model: '', provider: 'x'.repeat(513) }))?.servedModel, null, 'an empty name is no name');
    assert.strictEqual(measured(costFromUsage({ cost: 1 }, MAX, { provider: 'x'.repeat(513) }))?.provider, null, 'nor an absurdly long one');
  });

  QUnit.test('a BYOK total above CALL_COST_MAX_USD is rejected even when each part is below it', (assert) => {
    const cost = costFromUsage({ cost: 600, is_byok: true, cost_details: { upstream_inference_cost: 600 } }, MAX);
    assert.true(cost !== null && isRejectedCost(cost), 'rejected');
  });

  QUnit.test('/generation: total_cost + upstream_inference_cost with BYOK; model and provider_name', (assert) => {
    const byok = measured(costFromGeneration({ total_cost: 0.00000105, upstream_inference_cost: 0.000021, is_byok: true, model: 'm/x', provider_name: 'P', tokens_prompt: 1, tokens_completion: 2 }, MAX));
    assert.deepEqual([byok?.costNano.toString(), byok?.servedModel, byok?.provider, byok?.isByok], ['22050', 'm/x', 'P', true]);
    const plain = measured(costFromGeneration({ total_cost: 0.000021, upstream_inference_cost: null, is_byok: false }, MAX));
    assert.strictEqual(plain?.costNano.toString(), '21000');
    assert.strictEqual(costFromGeneration({ total_cost: 0.000001, upstream_inference_cost: null, is_byok: true }, MAX), null);
  });
});
