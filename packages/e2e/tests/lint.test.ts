import { ESLint } from 'eslint';
import { REPO_ROOT } from '@metergate/testkit';

/**
 * The code rules of the developers' guide (eslint.config.js: functions ≤ 70 lines, no
 * process.env outside the config modules, no unexplained ignored error, no floating promise,
 * errors extend CodedError), checked as one test so `npm test` and CI count and show a breach.
 */
QUnit.module('lint', () => {
  QUnit.test('eslint finds no problem in the repository', async (assert) => {
    const eslint = new ESLint({ cwd: REPO_ROOT });
    const results = await eslint.lintFiles(['.']);
    const problems = results.flatMap((result) => result.messages.map((m) =>
      `${result.filePath.slice(REPO_ROOT.length + 1)}:${m.line}:${m.column} ${m.ruleId ?? 'parse'}: ${m.message}`));
    assert.true(results.length > 100, `eslint looked at the repository's files (${results.length})`);
    assert.deepEqual(problems, [], 'no problems (run `npm run lint` to see them with context)');
  });
});
