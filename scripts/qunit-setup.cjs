'use strict';
// Loaded by the QUnit CLI (--require) before any test file: sets suite-wide limits and
// prints the closing line CI reads ("qunit: N passed, N failed, N skipped").
/* global QUnit */
QUnit.config.testTimeout = 120_000; // the slowest test (kill -9 + reconcile) takes ~20 s here
QUnit.config.reorder = false;
// QUnit's TAP reporter serializes failed assertions' values with JSON; a BigInt (all our money)
// would throw there and end the run without a summary.
// eslint-disable-next-line no-extend-native
BigInt.prototype.toJSON = function toJSON() { return `${this}n`; };
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
