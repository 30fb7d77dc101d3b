// The official `openai` npm client, unmodified, pointed at the proxy (/v1 and /api/v1).
import OpenAI from 'openai';
import { startStack, type TestStack } from '@metergate/testkit';
import { assertBooks, HTTP_TIMEOUT_MS } from './helpers.js';

QUnit.module('the official openai client', (hooks) => {
  let stack: TestStack;
  hooks.before(async () => { stack = await startStack(); });
  hooks.after(async () => { await stack.close(); });

  for (const base of ['/v1', '/api/v1']) {
    QUnit.test(`non-streaming and streaming completions via ${base}`, async (assert) => {
      const user = `openai${base.replace(/\//g, '-')}`;
      const apiKey = await stack.createUser(user);
      const client = new OpenAI({ baseURL: `${stack.url}${base}`, apiKey, maxRetries: 0, timeout: HTTP_TIMEOUT_MS });

      const completion = await client.chat.completions.create({ model: 'openai/gpt-4o', messages: [{ role: 'user', content: 'Say hi' }] });
      assert.strictEqual(completion.object, 'chat.completion');
      assert.true((completion.choices[0]?.message.content ?? '').length > 0, 'content');
      assert.true((completion.usage?.completion_tokens ?? 0) > 0, 'usage');

      const stream = await client.chat.completions.create({ model: 'anthropic/claude-sonnet-4', stream: true, messages: [{ role: 'user', content: 'Say hi' }] });
      let text = '';
      let chunks = 0;
      let usage: OpenAI.CompletionUsage | undefined;
      for await (const chunk of stream) {
        chunks += 1;
        text += chunk.choices[0]?.delta.content ?? '';
        usage = chunk.usage ?? usage;
      }
      assert.true(chunks > 2, `${chunks} chunks`);
      assert.true(text.includes('héllo') && text.includes('日本'), `multibyte text intact: ${text}`);
      assert.true((usage?.completion_tokens ?? 0) > 0, 'usage chunk read by the client');

      const page = await client.models.list();
      assert.true(page.data.some((model) => model.id === 'openai/gpt-4o'), 'models listed');
      await assertBooks(assert, stack, user);
      assert.strictEqual(stack.sim.generations().filter((g) => g.user === user).length, 2);
    });
  }

  QUnit.test("the client surfaces our errors as OpenAI's typed errors", async (assert) => {
    const client = new OpenAI({ baseURL: `${stack.url}/v1`, apiKey: 'mg-wrong', maxRetries: 0, timeout: HTTP_TIMEOUT_MS });
    try {
      await client.chat.completions.create({ model: 'openai/gpt-4o', messages: [{ role: 'user', content: 'hi' }] });
      assert.true(false, 'should have thrown');
    } catch (error) {
      assert.true(error instanceof OpenAI.AuthenticationError, String(error));
      assert.strictEqual((error as InstanceType<typeof OpenAI.APIError>).code, 'invalid_api_key');
    }
  });
});
