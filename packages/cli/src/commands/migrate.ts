import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { loadMigrations, migrate, pendingMigrations } from '@metergate/db';
import { withDatabase } from '../db.js';
import { printJson } from '../output.js';

/** The checkout's migrations/ (packages/cli/dist/src/commands → repository root), as the proxy finds it. */
const MIGRATIONS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../../../migrations');

export function registerMigrate(program: Command): void {
  program.command('migrate')
    .description('apply pending migrations (the proxy also does this at start-up, under the same advisory lock)')
    .option('--dir <dir>', 'migrations directory', MIGRATIONS_DIR)
    .option('--status', 'only list pending migrations, apply nothing')
    .option('--json', 'machine output')
    .action(migrateCommand);
}

async function migrateCommand(opts: { dir: string; status?: boolean; json?: boolean }): Promise<void> {
  const migrations = await loadMigrations(opts.dir);
  const names = await withDatabase(async ({ pool }) => {
    if (opts.status === true) return pendingMigrations(pool, migrations);
    const client = await pool.connect();
    try {
      return await migrate(client, migrations);
    } finally {
      client.release();
    }
  });
  const key = opts.status === true ? 'pending' : 'applied';
  if (opts.json === true) return printJson({ [key]: names, known: migrations.length });
  if (names.length === 0) {
    process.stdout.write(opts.status === true ? 'no pending migrations\n' : `up to date (${migrations.length} migrations)\n`);
    return;
  }
  for (const name of names) process.stdout.write(`${key} ${name}\n`);
}
