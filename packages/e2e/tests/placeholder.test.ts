QUnit.module('e2e package', () => {
  QUnit.test('compiles and loads', (assert) => {
    assert.strictEqual(typeof QUnit.module, 'function');
  });
});
