import assert from 'node:assert/strict';

/** The test harness's one reading of the environment (set by scripts/test.mjs). */
export function testEnv(): { adminUrl: string; template: string } {
  const adminUrl = process.env.MG_TEST_ADMIN_URL;
  const template = process.env.MG_TEST_TEMPLATE;
  assert(adminUrl !== undefined && template !== undefined,
    'MG_TEST_ADMIN_URL is unset: run the tests with `npm test` (scripts/test.mjs starts Postgres)');
  return { adminUrl, template };
}
