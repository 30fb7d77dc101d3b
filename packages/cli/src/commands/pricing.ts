import { InvalidArgumentError, type Command } from 'commander';
import { pricing } from '@metergate/db';
import { withDatabase } from '../db.js';
import { notFound } from '../errors.js';
import { defaultPricingJson, userPricingJson } from '../json.js';
import { printJson, printRecord } from '../output.js';
import { nonEmpty } from '../parse.js';

/**
 * Resale pricing: a user is charged upstream cost × multiplier (a global default, optionally
 * overridden per user), computed in exact integers when each request settles and rounded up to
 * the next nano-USD. The JSON is the admin API's (GET/PUT /admin/pricing, /admin/users/:id/pricing).
 */
export function registerPricing(program: Command): void {
  const cmd = program.command('pricing').description('the price multiplier: amount charged = upstream cost × multiplier (rounded up to the nano-USD)');
  cmd.command('set-default')
    .description('set the default multiplier every user without an override pays, e.g. 1.25 (> 0, ≤ 1000, at most 6 decimals)')
    .argument('<multiplier>', 'decimal multiplier', multiplier)
    .option('--json', 'machine output')
    .action(async (ppm: bigint, opts: { json?: boolean }) => {
      const current = await withDatabase(async ({ pool }) => {
        await pricing.setDefaultMultiplier(pool, ppm);
        return pricing.getPricing(pool);
      });
      if (opts.json === true) return printJson(defaultPricingJson(current));
      printRecord(defaultPricingJson(current));
    });
  cmd.command('set-user')
    .description('override the multiplier for one user; "default" removes the override')
    .argument('<user>', 'user id', nonEmpty('user id'))
    .argument('<multiplier>', 'decimal multiplier, or "default"', (text: string) => (text === 'default' ? null : multiplier(text)))
    .option('--json', 'machine output')
    .action(async (userId: string, ppm: bigint | null, opts: { json?: boolean }) => {
      const current = await withDatabase(async ({ pool }) =>
        ((await pricing.setUserMultiplier(pool, userId, ppm)) ? pricing.getPricing(pool, userId) : null));
      if (current === null) throw notFound(`no user ${userId}`);
      if (opts.json === true) return printJson(userPricingJson(userId, current));
      printRecord(userPricingJson(userId, current));
    });
  cmd.command('show')
    .description('show the default multiplier, or with a user id the one in force for that user')
    .argument('[user]', 'user id')
    .option('--json', 'machine output')
    .action(async (userId: string | undefined, opts: { json?: boolean }) => {
      const current = await withDatabase(({ pool }) => pricing.getPricing(pool, userId));
      if (userId !== undefined && !current.userExists) throw notFound(`no user ${userId}`);
      const shown = userId === undefined ? defaultPricingJson(current) : userPricingJson(userId, current);
      if (opts.json === true) return printJson(shown);
      printRecord(shown);
    });
}

function multiplier(text: string): bigint {
  try {
    return pricing.parseMultiplier(text);
  } catch (error) {
    if (error instanceof pricing.MultiplierFormatError) throw new InvalidArgumentError(error.message);
    throw error;
  }
}
