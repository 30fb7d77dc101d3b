#!/usr/bin/env node
// The `metergate` command. A committed, executable file (the compiler's output is not
// executable, so a fresh clone's `npx metergate` could not run dist/src/main.js directly).
try {
  await import('../dist/src/main.js');
} catch (error) {
  if (error?.code === 'ERR_MODULE_NOT_FOUND' && String(error.message).includes('dist/src/main.js')) {
    process.stderr.write('metergate: the CLI is not built yet: run `npm ci` (or `npx tsc -b`) in the checkout first\n');
    process.exit(1);
  }
  throw error;
}
