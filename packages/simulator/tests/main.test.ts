import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { authHeaders, chat, userMessages, type Chunk } from './helpers.js';
import type { Simulator } from '../src/index.js';

const MAIN = fileURLToPath(new URL('../src/main.js', import.meta.url));

QUnit.module('simulator main.js', () => {
  QUnit.test('prints one JSON line, serves the API and books, exits on SIGTERM', async (assert) => {
    assert.timeout(10_000);
    const child = spawn(process.execPath, [MAIN, '--port', '0', '--host', '127.0.0.1', '--api-key', 'X', '--lookup-404-ms', '50'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    try {
      let output = '';
      child.stdout.setEncoding('utf8');
      while (!output.includes('\n')) {
        const [data] = (await once(child.stdout, 'data')) as [string];
        output += data;
      }
      const { url, port } = JSON.parse(output.trim()) as { url: string; port: number };
      assert.strictEqual(url, `http://127.0.0.1:${port}/api/v1`);
      assert.true(port > 0);
      // Only `url` is used by chat(); a stand-in for an in-process Simulator.
      const remote = { url } as Simulator;
      const res = await chat(remote, { messages: userMessages(), user: 'frank' }, { headers: authHeaders('X') });
      assert.strictEqual(res.status, 200);
      await res.json();
      const books = (await (await fetch(`${url}/__sim/generations`)).json()) as Chunk;
      assert.strictEqual(books['data'].length, 1);
      assert.strictEqual(books['data'][0].user, 'frank');
      assert.strictEqual(typeof books['data'][0].costNano, 'string');
      child.kill('SIGTERM');
      const [code] = (await once(child, 'exit')) as [number | null];
      assert.strictEqual(code, 0);
      assert.strictEqual(output.trim().split('\n').length, 1);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});
