import type { Queryable } from './queryable.js';
import { prepared } from './prepared.js';

export interface KeyOwner { keyId: string; userId: string; revoked: boolean }

export async function insertKey(db: Queryable, key: { id: string; userId: string; hash: Buffer }): Promise<boolean> {
  const result = await db.query(
    `insert into api_keys (id, user_id, key_hash)
     select $1::text, id, $3::bytea from users where id = $2::text`,
    [key.id, key.userId, key.hash],
  );
  return result.rowCount === 1;
}

export async function findKeyOwner(db: Queryable, hash: Buffer): Promise<KeyOwner | null> {
  const result = await db.query<{ id: string; user_id: string; revoked: boolean }>(prepared('find_key_owner',
    'select id, user_id, revoked_at is not null as revoked from api_keys where key_hash = $1::bytea',
    [hash],
  ));
  const row = result.rows[0];
  return row === undefined ? null : { keyId: row.id, userId: row.user_id, revoked: row.revoked };
}

/** Returns false when there is no such key. Revoking twice keeps the first time. */
export async function revokeKey(db: Queryable, keyId: string): Promise<boolean> {
  const result = await db.query(
    'update api_keys set revoked_at = coalesce(revoked_at, now()) where id = $1::text',
    [keyId],
  );
  return result.rowCount === 1;
}
