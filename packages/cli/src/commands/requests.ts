import { Option, type Command } from 'commander';
import { type RequestState, reports } from '@metergate/db';
import { withDatabase } from '../db.js';
import { requestJson } from '../json.js';
import { note, printJson, printTable } from '../output.js';
import { limit } from '../parse.js';

const REQUESTS_PAGE_MAX = 1000;
const STATES = ['unsettled', 'in_flight', 'awaiting_cost', 'unresolved', 'failed', 'settled', 'voided', 'all'] as const;

export function registerRequests(program: Command): void {
  program.command('requests')
    .description('metered requests for support, newest first (default: unsettled = in_flight, awaiting_cost or unresolved)')
    .addOption(new Option('--state <state>', 'which requests').choices(STATES).default('unsettled'))
    .option('--user <id>', 'only this user')
    .option('--limit <n>', `page size (max ${REQUESTS_PAGE_MAX})`, limit(REQUESTS_PAGE_MAX), 50)
    .option('--cursor <cursor>', 'next_cursor from a previous page')
    .option('--json', 'machine output: {"data": [requests], "next_cursor"}')
    .action(requestsCommand);
}

interface RequestsOptions { state: (typeof STATES)[number]; user?: string; limit: number; cursor?: string; json?: boolean }

async function requestsCommand(opts: RequestsOptions): Promise<void> {
  const state: RequestState | 'unsettled' | null = opts.state === 'all' ? null : opts.state;
  const page = await withDatabase(({ pool }) => reports.listRequests(pool, {
    state, userId: opts.user ?? null, limit: opts.limit, cursor: opts.cursor ?? null,
  }));
  if (opts.json === true) return printJson({ data: page.requests.map(requestJson), next_cursor: page.nextCursor });
  printTable(['id', 'user', 'model', 'state', 'upstream_cost_usd', 'lookups', 'started_at', 'reason'], page.requests.map((request) => {
    const json = requestJson(request);
    return [json.id, json.user_id, json.model, json.state, json.upstream_cost_usd, json.lookup_attempts, json.started_at, json.reason];
  }), { alignRight: [4, 5] });
  if (page.nextCursor !== null) note(`more: --cursor ${page.nextCursor}`);
}
