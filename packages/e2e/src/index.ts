/** Shared helpers for the end-to-end tests live in @metergate/testkit; this package holds only tests. */
export const E2E_PACKAGE = '@metergate/e2e';
