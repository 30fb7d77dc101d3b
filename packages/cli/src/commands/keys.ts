import type { Command } from 'commander';
import { keys } from '@metergate/db';
import { mintApiKey } from '../api-key.js';
import { withDatabase } from '../db.js';
import { notFound } from '../errors.js';
import { note, printJson, printRecord } from '../output.js';
import { nonEmpty } from '../parse.js';

export function registerKeys(program: Command): void {
  const cmd = program.command('keys').description('create and revoke API keys');
  cmd.command('create')
    .description('create another API key for a user (printed once, stored only as a hash)')
    .argument('<user>', 'user id', nonEmpty('user id'))
    .option('--json', 'machine output')
    .action(createKey);
  cmd.command('revoke')
    .description('revoke an API key by its id (key_...); revoking twice is harmless')
    .argument('<key-id>', 'key id', nonEmpty('key id'))
    .option('--json', 'machine output')
    .action(revokeKey);
}

async function createKey(userId: string, opts: { json?: boolean }): Promise<void> {
  const key = mintApiKey();
  const inserted = await withDatabase(({ pool }) => keys.insertKey(pool, { id: key.id, userId, hash: key.hash }));
  if (!inserted) throw notFound(`no user ${userId}`);
  const shown = { id: key.id, user_id: userId, api_key: key.key };
  if (opts.json === true) return printJson(shown);
  printRecord({ user: userId, key_id: key.id, api_key: key.key });
  note('The API key is shown only this once; it is stored as a hash.');
}

async function revokeKey(keyId: string, opts: { json?: boolean }): Promise<void> {
  const revoked = await withDatabase(({ pool }) => keys.revokeKey(pool, keyId));
  if (!revoked) throw notFound(`no key ${keyId}`);
  if (opts.json === true) return printJson({ id: keyId, revoked: true });
  process.stdout.write(`revoked ${keyId}\n`);
}
