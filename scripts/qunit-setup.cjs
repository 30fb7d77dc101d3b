'use strict';
// Loaded by the QUnit CLI (--require) before any test file: sets suite-wide limits and
// prints the closing line CI reads ("qunit: N passed, N failed, N skipped").
/* global QUnit */
QUnit.config.testTimeout = 120_000; // the slowest test (kill -9 + reconcile) takes ~20 s here
QUnit.config.reorder = false;
QUnit.on('runEnd', (run) => {
  const { passed, failed, skipped, todo } = run.testCounts;
  // Printed after the TAP plan so it is the last line of output.
  process.on('exit', () => {
    console.log(`qunit: ${passed} passed, ${failed} failed, ${skipped + todo} skipped`);
  });
});
