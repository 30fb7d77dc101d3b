import { InvalidArgumentError, type Command } from 'commander';
import { formatNano, ledger, requests } from '@metergate/db';
import { withDatabase } from '../db.js';
import { conflict, notFound } from '../errors.js';
import { entryJson } from '../json.js';
import { printJson, printRecord } from '../output.js';
import { amountNano, nonEmpty } from '../parse.js';

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function requestId(text: string): string {
  if (!UUID_RE.test(text)) throw new InvalidArgumentError(`a request id is a UUID (see \`metergate requests\`); got ${JSON.stringify(text)}`);
  return text;
}

function upstreamCostNano(text: string): bigint {
  const nano = amountNano(text);
  if (nano < 0n) throw new InvalidArgumentError('the cost an upstream billed is never negative');
  return nano;
}

/**
 * Closing stuck requests by hand (as POST /admin/requests/:id/settle | void): an awaiting_cost or
 * unresolved request is settled at a cost, or voided without one, exactly once; either releases
 * its hold.
 */
export function registerResolve(program: Command): void {
  program.command('settle-request')
    .description('charge an awaiting_cost or unresolved request what the upstream billed (priced with the user\'s multiplier), once; releases its hold')
    .argument('<request>', 'request id (UUID)', requestId)
    .argument('<cost-usd>', 'what the upstream billed, in USD, such as 0.0012 (at most 9 decimals)', upstreamCostNano)
    .option('--note <text>', 'why (kept on the request)')
    .option('--json', 'machine output (the ledger entry)')
    .action(settleRequest);
  program.command('void-request')
    .description('close an awaiting_cost or unresolved request without a charge, once; releases its hold')
    .argument('<request>', 'request id (UUID)', requestId)
    .requiredOption('--note <text>', 'why (kept on the request)', nonEmpty('note'))
    .option('--json', 'machine output')
    .action(voidRequest);
}

async function notClosable(id: string): Promise<never> {
  const row = await withDatabase(({ pool }) => requests.getRequest(pool, id));
  if (row === null) throw notFound(`no request ${id}`);
  throw conflict(`request ${id} is ${row.state}: only awaiting_cost or unresolved requests can be closed by hand`);
}

async function settleRequest(id: string, costNano: bigint, opts: { note?: string; json?: boolean }): Promise<void> {
  const entry = await withDatabase(({ pool }) => ledger.settleUsage(pool, {
    requestId: id, upstreamCostNano: costNano, generationId: null, promptTokens: null, completionTokens: null,
  }, { operatorNote: opts.note ?? 'settled by an operator (CLI)' }));
  if (entry === null) return notClosable(id);
  if (opts.json === true) return printJson(entryJson(entry));
  printRecord({ request: id, user: entry.userId, charged_usd: formatNano(-entry.amountNano), hold_released_usd: formatNano(entry.releasedHoldNano), balance_usd: formatNano(entry.balanceAfterNano) });
}

async function voidRequest(id: string, opts: { note: string; json?: boolean }): Promise<void> {
  const voided = await withDatabase(({ pool }) => requests.voidRequest(pool, id, opts.note));
  if (!voided) return notClosable(id);
  if (opts.json === true) return printJson({ id, state: 'voided', note: opts.note });
  printRecord({ request: id, state: 'voided', note: opts.note });
}
