import { Option, type Command } from 'commander';
import { formatNano, keys, ledger, sqlState, SqlState, users, pricing, reports } from '@metergate/db';
import { mintApiKey } from '../api-key.js';
import { inTransaction, withDatabase } from '../db.js';
import { conflict, notFound, usage } from '../errors.js';
import { userJson, userListJson, userPricingJson } from '../json.js';
import { note, printJson, printRecord, printTable } from '../output.js';
import { balanceThresholdNano, limit, nonEmpty, positiveAmountNano } from '../parse.js';

const USERS_PAGE_MAX = 1000;
const USER_ID_RULE = 'a user id is 1-128 characters of A-Z a-z 0-9 . _ @ : + - starting with a letter or digit';

export function registerUsers(program: Command): void {
  const cmd = program.command('users').description('create, list and show users');
  cmd.command('create')
    .description('create a user and its first API key (the key is printed once and stored only as a hash)')
    .argument('<id>', 'user id', nonEmpty('user id'))
    .option('--grant <usd>', 'also grant this many USD of credit, in the same transaction', positiveAmountNano)
    .option('--note <text>', 'note for the grant')
    .option('--json', 'machine output')
    .action(createUser);
  cmd.command('list')
    .description('list users with balance and spend, paged')
    .addOption(new Option('--sort <field>', 'sort by').choices(['balance', 'spend', 'id']).default('id'))
    .addOption(new Option('--order <order>', 'sort order').choices(['asc', 'desc']).default('asc'))
    .option('--balance-below <usd>', 'only users whose balance is below this', balanceThresholdNano)
    .option('--limit <n>', `page size (max ${USERS_PAGE_MAX})`, limit(USERS_PAGE_MAX), 50)
    .option('--cursor <cursor>', 'next_cursor from a previous page')
    .option('--json', 'machine output')
    .action(listUsers);
  cmd.command('show')
    .description('show one user: balance, credits, usage, price multiplier')
    .argument('<id>', 'user id')
    .option('--json', 'machine output')
    .action(showUser);
}

async function createUser(id: string, opts: { grant?: bigint; note?: string; json?: boolean }): Promise<void> {
  if (opts.note !== undefined && opts.grant === undefined) throw usage('--note is the grant\'s note: give --grant too');
  const apiKey = mintApiKey();
  const created = await withDatabase(({ pool }) => inTransaction(pool, async (client) => {
    let user;
    try {
      user = await users.insertUser(client, id);
    } catch (error) {
      if (sqlState(error) === SqlState.checkViolation) throw usage(`invalid user id ${JSON.stringify(id)}: ${USER_ID_RULE}`);
      throw error;
    }
    if (user === null) return null;
    await keys.insertKey(client, { id: apiKey.id, userId: id, hash: apiKey.hash });
    if (opts.grant !== undefined) {
      await ledger.appendCredit(client, { userId: id, kind: 'grant', amountNano: opts.grant, note: opts.note ?? null });
    }
    const current = (await users.getUser(client, id)) ?? user;
    return { ...userJson(current), api_key: apiKey.key, key_id: apiKey.id };
  }));
  if (created === null) throw conflict(`user ${id} already exists`);
  if (opts.json === true) return printJson(created);
  printRecord({ user: created.id, balance_usd: created.balance_usd, key_id: created.key_id, api_key: created.api_key });
  note('The API key is shown only this once; it is stored as a hash.');
}

interface ListOptions { sort: 'balance' | 'spend' | 'id'; order: 'asc' | 'desc'; balanceBelow?: bigint; limit: number; cursor?: string; json?: boolean }

async function listUsers(opts: ListOptions): Promise<void> {
  const page = await withDatabase(({ pool }) => reports.listUsers(pool, {
    sort: opts.sort, order: opts.order, balanceBelowNano: opts.balanceBelow ?? null, limit: opts.limit, cursor: opts.cursor ?? null,
  }));
  if (opts.json === true) {
    return printJson({ data: page.users.map(userListJson), next_cursor: page.nextCursor });
  }
  printTable(['user', 'balance_usd', 'credits_usd', 'spend_usd', 'created_at'], page.users.map((user) => [
    user.id, formatNano(user.balanceNano), formatNano(user.creditsNano), formatNano(user.spendNano), user.createdAt.toISOString(),
  ]), { alignRight: [1, 2, 3] });
  if (page.nextCursor !== null) note(`more: --cursor ${page.nextCursor}`);
}

async function showUser(id: string, opts: { json?: boolean }): Promise<void> {
  const found = await withDatabase(async ({ pool }) => {
    const user = await users.getUser(pool, id);
    return user === null ? null : { user, pricing: await pricing.getPricing(pool, id) };
  });
  if (found === null) throw notFound(`no user ${id}`);
  const { multiplier, effective_multiplier: effectiveMultiplier } = userPricingJson(id, found.pricing);
  const shown = { ...userJson(found.user), multiplier, effective_multiplier: effectiveMultiplier };
  if (opts.json === true) return printJson(shown);
  printRecord(shown);
}
