import { InvalidArgumentError, type Command } from 'commander';
import { controls, SPEND_PERIODS_TEXT, type ControlsPatch, type Scope, type SpendPeriod } from '@metergate/db';
import { limitsJson } from '@metergate/server/limits-json';
import { isValidPattern } from '@metergate/server/model-rules';
import { withDatabase } from '../db.js';
import { notFound, usage } from '../errors.js';
import { printJson, printRecord } from '../output.js';
import { amountNano, nonEmpty } from '../parse.js';

/**
 * Spend limits, rate limits and model lists on a user (or, with --key, an API key): the same
 * data as the admin API's GET/PUT /admin/users/:id/limits and /admin/keys/:keyId/limits. A
 * change to model lists reaches running replicas within AUTH_CACHE_MS.
 */
export function registerLimits(program: Command): void {
  const cmd = program.command('limits').description('spend limits (day/week/month/never, UTC), requests per minute, concurrent calls, model allow/deny lists');
  cmd.command('show')
    .description('a user\'s (or with --key, a key\'s) limits with what is spent and held in each current period')
    .argument('<id>', 'user id, or key id with --key', nonEmpty('id'))
    .option('--key', 'the id is an API key id (key_...)')
    .option('--json', 'machine output')
    .action(async (id: string, opts: { key?: boolean; json?: boolean }) => show(scopeOf(id, opts), opts.json === true));
  cmd.command('set')
    .description('change limits; options not given are kept')
    .argument('<id>', 'user id, or key id with --key', nonEmpty('id'))
    .option('--key', 'the id is an API key id (key_...)')
    .option('--spend <period=usd...>', 'spend limits replacing the current ones, e.g. day=1.00 month=20 ("none": no spend limit)', collect, [])
    .option('--rpm <n|none>', 'requests per minute', count)
    .option('--concurrent <n|none>', 'concurrent calls', count)
    .option('--allow <models|none>', 'comma-separated allow list of model ids and vendor/* patterns ("none": no allow list)', modelList)
    .option('--deny <models|none>', 'comma-separated deny list ("none": no deny list)', modelList)
    .option('--json', 'machine output')
    .action(set);
}

// Commander turns a parser's null into '', so "none" stays a string until set() reads it.
type SetOptions = { key?: boolean; json?: boolean; spend: string[]; rpm?: number | 'none'; concurrent?: number | 'none'; allow?: string[] | 'none'; deny?: string[] | 'none' };

async function set(id: string, opts: SetOptions): Promise<void> {
  const scope = scopeOf(id, opts);
  const patch: ControlsPatch = {};
  if (opts.spend.length > 0) patch.spend = opts.spend.length === 1 && opts.spend[0] === 'none' ? null : opts.spend.map(spendLimit);
  if (patch.spend !== undefined && patch.spend !== null && new Set(patch.spend.map((s) => s.period)).size !== patch.spend.length) {
    throw usage('one spend limit per period');
  }
  const orNull = <T>(value: T | 'none'): T | null => (value === 'none' ? null : value);
  if (opts.rpm !== undefined) patch.requestsPerMinute = orNull(opts.rpm);
  if (opts.concurrent !== undefined) patch.concurrentCalls = orNull(opts.concurrent);
  if (opts.allow !== undefined || opts.deny !== undefined) {
    patch.models = { ...(opts.allow !== undefined ? { allow: orNull(opts.allow) } : {}), ...(opts.deny !== undefined ? { deny: orNull(opts.deny) } : {}) };
  }
  if (Object.keys(patch).length === 0) throw usage('nothing to change: give --spend, --rpm, --concurrent, --allow or --deny');
  const changed = await withDatabase(({ pool }) => controls.putControls(pool, scope, patch, null));
  if (!changed) throw notFound(`no ${scope.kind} ${scope.id}`);
  await show(scope, opts.json === true);
}

async function show(scope: Scope, json: boolean): Promise<void> {
  const state = await withDatabase(({ pool }) => controls.getControls(pool, scope, null));
  if (state === null) throw notFound(`no ${scope.kind} ${scope.id}`);
  const shown = limitsJson(state);
  if (json) return printJson(shown);
  const spend = state.spend.length === 0 ? 'none' : (shown.spend as Array<Record<string, string | null>>)
    .map((s) => `${s.period}: ${s.spent_usd} of ${s.amount_usd} USD spent, ${s.held_usd} held${s.resets_at === null ? '' : `, resets ${s.resets_at}`}`).join('; ');
  printRecord({
    [scope.kind]: scope.id, spend, requests_per_minute: state.requestsPerMinute ?? 'none', requests_this_minute: state.requestsThisMinute,
    concurrent_calls: state.concurrentCalls ?? 'none', open_calls: state.openCalls,
    models_allow: state.models.allow?.join(', ') ?? 'any', models_deny: state.models.deny?.join(', ') ?? 'none',
  });
}

function scopeOf(id: string, opts: { key?: boolean }): Scope {
  return { kind: opts.key === true ? 'key' : 'user', id };
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

function spendLimit(text: string): { period: SpendPeriod; amountNano: bigint } {
  const [period, amount] = text.split('=') as [string, string | undefined];
  if (!(SPEND_PERIODS_TEXT as readonly string[]).includes(period) || amount === undefined) {
    throw usage(`--spend takes period=usd with period one of ${SPEND_PERIODS_TEXT.join(', ')}; got ${JSON.stringify(text)}`);
  }
  const nano = amountNano(amount);
  if (nano < 0n) throw usage(`a spend limit cannot be negative; got ${amount}`);
  return { period: period as SpendPeriod, amountNano: nano };
}

function count(text: string): number | 'none' {
  if (text === 'none') return 'none';
  if (!/^\d{1,7}$/.test(text) || Number(text) < 1) throw new InvalidArgumentError(`expected a positive whole number or "none"; got ${JSON.stringify(text)}`);
  return Number(text);
}

function modelList(text: string): string[] | 'none' {
  if (text === 'none') return 'none';
  const list = text.split(',').map((entry) => entry.trim()).filter((entry) => entry !== '');
  const bad = list.find((entry) => !isValidPattern(entry));
  if (bad !== undefined) throw new InvalidArgumentError(`a model entry is an exact id or a vendor pattern such as "openai/*"; got ${JSON.stringify(bad)}`);
  return list;
}
