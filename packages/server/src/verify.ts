#!/usr/bin/env node
/**
 * `npm run verify`: checks the books in the database and prints a summary; exits 1 on any
 * breach, 2 on bad configuration or an unreachable database. Read-only. Uses DATABASE_URL, or
 * the embedded Postgres of this checkout when it is unset (as `npm start` does).
 */
import { startEmbeddedPostgres, verify } from '@metergate/db';
import pg from 'pg';
import { ConfigError, loadConfig, type Config } from './config.js';
import { formatReport, staleInFlightMs } from './reconcile/verify-report.js';

const SAMPLE_MAX = 20;

async function main(): Promise<number> {
  let config: Config;
  try {
    config = loadConfig();
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`metergate verify: ${error.message}\n`);
    return 2;
  }
  const embedded = config.databaseUrl === null
    ? await startEmbeddedPostgres({ dataDir: config.embeddedPgDir, port: config.embeddedPgPort })
    : null;
  const pool = new pg.Pool({
    connectionString: config.databaseUrl ?? embedded!.url, max: 1,
    connectionTimeoutMillis: config.poolAcquireTimeoutMs, statement_timeout: config.statementTimeoutMs * 6,
  });
  pool.on('error', () => undefined);
  try {
    const report = await verify.verifyBooks(pool, { staleInFlightMs: staleInFlightMs(config), sampleMax: SAMPLE_MAX });
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

main().then((code) => process.exit(code), (error: unknown) => {
  process.stderr.write(`metergate verify: ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(2);
});
