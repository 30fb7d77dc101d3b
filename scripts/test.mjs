#!/usr/bin/env node
// `npm test`: one real Postgres for the whole run (embedded, or the server at DATABASE_URL),
// a migrated template database that each test module clones (CREATE DATABASE ... TEMPLATE),
// then QUnit over every package's compiled tests. The last line is QUnit's summary.
import { spawn } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { loadMigrations, migrate, startEmbeddedPostgres } from '@metergate/db';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const TEMPLATE = 'mgtest_template';

async function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function startDatabase() {
  if (process.env.DATABASE_URL) return { url: process.env.DATABASE_URL, stop: async () => undefined, dir: null };
  const dir = path.join(root, '.test-data', `pg-${process.pid}`);
  const port = await freePort();
  // A throwaway cluster: durability settings off make it several times faster to set up.
  const handle = await startEmbeddedPostgres({
    dataDir: dir, port,
    settings: { fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off', max_connections: '500' },
  });
  return { url: handle.url, stop: () => handle.stop(), dir };
}

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

function runQunit(env) {
  const files = process.argv.slice(2);
  const globs = files.length > 0 ? files : ['packages/*/dist/tests/**/*.test.js'];
  const qunit = path.join(root, 'node_modules', 'qunit', 'bin', 'qunit.js');
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [qunit, '--require', './scripts/qunit-setup.cjs', ...globs], { cwd: root, env, stdio: 'inherit' });
    child.on('exit', (code, signal) => resolve(code ?? (signal ? 1 : 0)));
  });
}

const db = await startDatabase();
let code = 1;
try {
  await prepareTemplate(db.url);
  code = await runQunit({ ...process.env, MG_TEST_ADMIN_URL: db.url, MG_TEST_TEMPLATE: TEMPLATE });
} finally {
  await db.stop();
  if (db.dir) await rm(db.dir, { recursive: true, force: true });
}
process.exit(code);
