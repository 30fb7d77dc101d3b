#!/usr/bin/env node
/**
 * `npm run verify [-- --rollups]`: checks the books in the database and prints a summary;
 * exits 1 on any breach, 2 on bad configuration or arguments or an unreachable database.
 * Read-only. Uses DATABASE_URL, or the embedded Postgres of this checkout when it is unset (as
 * `npm start` does). --rollups also compares every usage rollup with the ledger (slow).
 */
import { parseArgs } from 'node:util';
import { EmbeddedPostgresError, startEmbeddedPostgres, verify, type EmbeddedPostgresHandle } from '@metergate/db';
import pg from 'pg';
import { ConfigError, loadConfig, type Config } from './config.js';
import { formatReport, staleInFlightMs } from './reconcile/verify-report.js';

const SAMPLE_MAX = 20;

async function main(): Promise<number> {
  let config: Config;
  let rollups: boolean;
  try {
    rollups = parseArgs({ options: { rollups: { type: 'boolean', default: false } } }).values.rollups;
    config = loadConfig();
  } catch (error) {
    if (!(error instanceof ConfigError) && !isArgumentError(error)) throw error;
    process.stderr.write(`metergate verify: ${(error as Error).message}\n`);
    return 2;
  }
  let embedded: EmbeddedPostgresHandle | null = null;
  try {
    if (config.databaseUrl === null) embedded = await startEmbeddedPostgres({ dataDir: config.embeddedPgDir, port: config.embeddedPgPort });
  } catch (error) {
    if (!(error instanceof EmbeddedPostgresError)) throw error;
    process.stderr.write(`metergate verify: ${error.message}\n`);
    return 2;
  }
  const pool = new pg.Pool({
    connectionString: config.databaseUrl ?? embedded!.url, max: 1,
    connectionTimeoutMillis: config.poolAcquireTimeoutMs, statement_timeout: config.statementTimeoutMs * 6,
  });
  pool.on('error', () => undefined);
  try {
    const report = await verify.verifyBooks(pool, { staleInFlightMs: staleInFlightMs(config), sampleMax: SAMPLE_MAX, rollups });
    process.stdout.write(`${formatReport(report)}\n`);
    return report.ok ? 0 : 1;
  } catch (error) {
    process.stderr.write(`metergate verify: could not check the database: ${error instanceof Error ? error.message : String(error)}\n`);
    return 2;
  } finally {
    await pool.end();
    await embedded?.stop();
  }
}

/** node:util parseArgs rejects an unknown or malformed option with one of these codes. */
function isArgumentError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS_');
}

main().then((code) => process.exit(code), (error: unknown) => {
  process.stderr.write(`metergate verify: ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(2);
});
