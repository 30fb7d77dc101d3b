'use strict';
// Loaded by the QUnit CLI (--require) before any test file: sets suite-wide limits and
// prints the closing line CI reads ("qunit: N passed, N failed, N skipped").
/* global QUnit */
QUnit.config.testTimeout = 120_000; // the slowest test (kill -9 + reconcile) takes ~20 s here
QUnit.config.reorder = false;
// QUnit's TAP reporter serializes failed assertions' values with JSON; a BigInt (all our money)
// would throw there and end the run without a summary. The failed values are copied with each
// BigInt as text ("12n") for the report alone: nothing global is patched, so code under test
// (in-process servers included) still throws on JSON.stringify of a BigInt, as in production.
// scripts/test.mjs names the reporter (--reporter tap), which makes QUnit start it after this
// file, so this listener sees each test's end first.
const VALUE_DEPTH_MAX = 20;
function reportable(value, seen = new WeakSet(), depth = 0) {
  if (typeof value === 'bigint') return `${value}n`;
  if (value === null || typeof value !== 'object' || depth >= VALUE_DEPTH_MAX || seen.has(value)) return value;
  seen.add(value);
  if (Array.isArray(value)) return value.map((item) => reportable(item, seen, depth + 1));
  if (Object.getPrototypeOf(value) !== Object.prototype) return value;
  return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, reportable(item, seen, depth + 1)]));
}
QUnit.on('testEnd', (test) => {
  for (const error of test.errors) {
    error.actual = reportable(error.actual);
    error.expected = reportable(error.expected);
  }
});
QUnit.on('runEnd', (run) => {
  const { passed, failed, skipped, todo } = run.testCounts;
  // Printed after the TAP plan so it is the last line of output.
  process.on('exit', () => {
    console.log(`qunit: ${passed} passed, ${failed} failed, ${skipped + todo} skipped`);
    // Whoever ends the process (a library's exit hook calling process.exit(0) included),
    // a failed test must still fail the run: the exit code is read after these listeners.
    if (failed > 0) process.exitCode = 1;
  });
});
