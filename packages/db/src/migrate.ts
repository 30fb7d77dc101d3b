import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type pg from 'pg';
import { CodedError } from './coded-error.js';

/**
 * Migrations take a session advisory lock in Postgres's two-int4 key space, which never
 * overlaps the single-bigint space of the cost barrier, so replicas starting together apply
 * each file exactly once and never contend with user locks.
 */
const MIGRATION_LOCK = [0x4d475431, 1] as const; // "MGT1", 1
const FILE_RE = /^(\d{4})_[a-z0-9_]+\.sql$/;

export interface Migration { name: string; sql: string; checksum: string }

export class MigrationError extends CodedError<'migration_invalid'> {
  constructor(message: string, options?: { cause?: unknown }) { super('migration_invalid', message, options); }
}

export async function loadMigrations(dir: string): Promise<Migration[]> {
  const names = (await readdir(dir)).filter((name) => name.endsWith('.sql')).sort();
  const migrations: Migration[] = [];
  for (const [index, name] of names.entries()) {
    const match = FILE_RE.exec(name);
    if (match === null || Number(match[1]) !== index + 1) {
      throw new MigrationError(`migration ${name} must be named NNNN_words.sql and numbered ${index + 1} in sequence`);
    }
    const sql = await readFile(path.join(dir, name), 'utf8');
    migrations.push({ name, sql, checksum: createHash('sha256').update(sql).digest('hex') });
  }
  return migrations;
}

/** Applies pending migrations, each in its own transaction; returns the names applied. */
export async function migrate(client: pg.ClientBase, migrations: Migration[]): Promise<string[]> {
  // A backfill over a large ledger may take minutes: no statement limit for this session.
  await client.query(`select set_config('statement_timeout', '0', false)`);
  await client.query('select pg_advisory_lock($1::int4, $2::int4)', [...MIGRATION_LOCK]);
  try {
    await client.query(`create table if not exists schema_migrations (
      name text primary key, checksum text not null, applied_at timestamptz not null default now())`);
    const applied = await appliedChecksums(client);
    const done: string[] = [];
    for (const migration of migrations) {
      const checksum = applied.get(migration.name);
      if (checksum !== undefined) {
        if (checksum !== migration.checksum) {
          throw new MigrationError(`migration ${migration.name} was edited after it was applied; shipped migrations are never edited, add a new one`);
        }
        continue;
      }
      await applyOne(client, migration);
      done.push(migration.name);
    }
    return done;
  } finally {
    // On a dead connection the unlock fails too; the session's end frees the lock anyway, and
    // the original error is the one worth reporting.
    await client.query('select pg_advisory_unlock($1::int4, $2::int4)', [...MIGRATION_LOCK]).catch(() => undefined);
  }
}

/** Names of migrations known to this build but not applied to the database (for /readyz). */
export async function pendingMigrations(client: pg.ClientBase | pg.Pool, migrations: Migration[]): Promise<string[]> {
  const exists = await client.query<{ present: boolean }>(`select to_regclass('schema_migrations') is not null as present`);
  if (exists.rows[0]?.present !== true) return migrations.map((m) => m.name);
  const applied = await appliedChecksums(client);
  return migrations.filter((m) => !applied.has(m.name)).map((m) => m.name);
}

async function appliedChecksums(client: pg.ClientBase | pg.Pool): Promise<Map<string, string>> {
  const result = await client.query<{ name: string; checksum: string }>('select name, checksum from schema_migrations');
  return new Map(result.rows.map((row) => [row.name, row.checksum]));
}

async function applyOne(client: pg.ClientBase, migration: Migration): Promise<void> {
  await client.query('begin');
  try {
    await client.query(migration.sql);
    await client.query('insert into schema_migrations (name, checksum) values ($1::text, $2::text)', [migration.name, migration.checksum]);
    await client.query('commit');
  } catch (error) {
    // A failed rollback (connection gone) must not hide why the migration failed.
    const rollbackError = await client.query('rollback').then(() => null, (failure: unknown) => failure);
    const cause = rollbackError === null ? error : new AggregateError([error, rollbackError], 'migration and its rollback failed');
    throw new MigrationError(`migration ${migration.name} failed: ${(error as Error).message}`, { cause });
  }
}
