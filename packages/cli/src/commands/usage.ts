import { Option, type Command } from 'commander';
import { formatNano, reports, type UsageGroup } from '@metergate/db';
import { withDatabase } from '../db.js';
import { usage as usageError } from '../errors.js';
import { usageJson } from '../json.js';
import { printJson, printTable } from '../output.js';
import { limit } from '../parse.js';
import { addTimeRange } from './filters.js';

const USAGE_ROWS_MAX = 10_000;

export function registerUsage(program: Command): void {
  const cmd = program.command('usage')
    .description('usage summed by user, model, day or hour (UTC), most charged first: requests, tokens, amount charged and upstream cost')
    .addOption(new Option('--group-by <group>', 'group by').choices(['user', 'model', 'day', 'hour', 'endpoint']).makeOptionMandatory())
    .option('--user <id>', 'only this user')
    .option('--model <model>', 'only this model')
    .option('--limit <n>', `rows (max ${USAGE_ROWS_MAX})`, limit(USAGE_ROWS_MAX), 50)
    .option('--json', 'machine output: {"data": [{key, requests, prompt_tokens, completion_tokens, charged_usd, upstream_cost_usd}]} (cost_usd = charged_usd until 0.2)');
  addTimeRange(cmd).action(usageCommand);
}

interface UsageOptions { groupBy: UsageGroup; user?: string; model?: string; since?: Date; until?: Date; limit: number; json?: boolean }

async function usageCommand(opts: UsageOptions): Promise<void> {
  if (opts.since !== undefined && opts.until !== undefined && opts.since >= opts.until) throw usageError('--since must be before --until');
  const rows = await withDatabase(({ pool }) => reports.usageSummary(pool, {
    groupBy: opts.groupBy, since: opts.since ?? null, until: opts.until ?? null, userId: opts.user ?? null, model: opts.model ?? null, limit: opts.limit,
  }));
  if (opts.json === true) return printJson({ data: rows.map(usageJson) });
  printTable([opts.groupBy, 'requests', 'prompt_tokens', 'completion_tokens', 'charged_usd', 'upstream_cost_usd', 'margin_usd'],
    rows.map((row) => [row.key, row.requests, row.promptTokens, row.completionTokens, formatNano(row.chargedNano),
      formatNano(row.upstreamCostNano), formatNano(row.chargedNano - row.upstreamCostNano)]),
    { alignRight: [1, 2, 3, 4, 5, 6] });
}
