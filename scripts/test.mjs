#!/usr/bin/env node
// `npm test`: one real Postgres for the whole run (embedded, or the server at DATABASE_URL),
// a migrated template database that each test module clones (CREATE DATABASE ... TEMPLATE),
// then QUnit over every package's compiled tests. The last line is QUnit's summary.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { EmbeddedPostgresError, loadMigrations, migrate } from '@metergate/db';
import { ROOT as root, startThrowawayPostgres } from './lib/throwaway-pg.mjs';

const TEMPLATE = 'mgtest_template';

async function prepareTemplate(adminUrl) {
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await admin.query(`drop database if exists ${TEMPLATE} with (force)`);
    await admin.query(`create database ${TEMPLATE}`);
  } finally {
    await admin.end();
  }
  const url = new URL(adminUrl);
  url.pathname = `/${TEMPLATE}`;
  const client = new pg.Client({ connectionString: url.toString() });
  await client.connect();
  try {
    await migrate(client, await loadMigrations(path.join(root, 'migrations')));
  } finally {
    await client.end();
  }
}

/**
 * The compiled file of every test source (packages/X/tests/**\/*.test.ts → packages/X/dist/
 * tests/**\/*.test.js), rather than a glob over dist: tsc -b never deletes the output of a
 * removed source, and a stale test must not run.
 */
function compiledTests() {
  const out = [];
  for (const pkg of readdirSync(path.join(root, 'packages'))) {
    const testsDir = path.join(root, 'packages', pkg, 'tests');
    if (!existsSync(testsDir)) continue;
    for (const file of readdirSync(testsDir, { recursive: true })) {
      if (String(file).endsWith('.test.ts')) out.push(path.join('packages', pkg, 'dist', 'tests', String(file).replace(/\.ts$/, '.js')));
    }
  }
  return out.sort();
}

function runQunit(env) {
  const files = process.argv.slice(2);
  const globs = files.length > 0 ? files : compiledTests();
  const qunit = path.join(root, 'node_modules', 'qunit', 'bin', 'qunit.js');
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [qunit, '--reporter', 'tap', '--require', './scripts/qunit-setup.cjs', ...globs], { cwd: root, env, stdio: 'inherit' });
    child.on('exit', (code, signal) => resolve(code ?? (signal ? 1 : 0)));
  });
}

const db = await startThrowawayPostgres('pg').catch((error) => {
  // The launcher's failures are sentences saying what to do; a stack would only bury them.
  if (!(error instanceof EmbeddedPostgresError)) throw error;
  process.stderr.write(`npm test: ${error.message}\n`);
  process.exit(1);
});
let code;
try {
  await prepareTemplate(db.url);
  code = await runQunit({ ...process.env, MG_TEST_ADMIN_URL: db.url, MG_TEST_TEMPLATE: TEMPLATE });
} finally {
  await db.stop();
}
process.exit(code);
