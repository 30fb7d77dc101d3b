import { InvalidArgumentError, type Command } from 'commander';
import { priceBook, PriceFormatError, usdPriceToAtto } from '@metergate/db';
import { priceJson } from '@metergate/server/price-json';
import { withDatabase } from '../db.js';
import { notFound } from '../errors.js';
import { note, printJson, printRecord, printTable } from '../output.js';
import { nonEmpty } from '../parse.js';

function price(text: string): bigint {
  try {
    return usdPriceToAtto(text);
  } catch (error) {
    if (error instanceof PriceFormatError) throw new InvalidArgumentError(error.message);
    throw error;
  }
}

function tokens(text: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value <= 0 || value > 100_000_000) throw new InvalidArgumentError(`expected a positive token count; got ${JSON.stringify(text)}`);
  return value;
}

interface PinOptions {
  prompt: bigint; completion: bigint; request?: bigint; image?: bigint; webSearch?: bigint; internalReasoning?: bigint;
  inputCacheRead?: bigint; inputCacheWrite?: bigint; contextLength?: number; maxCompletionTokens?: number; note?: string; json?: boolean;
}

/**
 * The price book worst-case holds are computed from (GET/PUT/DELETE /admin/prices): upstream
 * prices refreshed from /models, and prices an operator pinned. Replicas re-read the book every
 * PRICE_BOOK_RELOAD_MS, so a pin made here applies everywhere within that time.
 */
export function registerPrices(program: Command): void {
  const cmd = program.command('prices').description('the model price book used for worst-case holds (USD per unit, exact)');
  cmd.command('list').description('every priced model, upstream and pinned').option('--json', 'machine output')
    .action(async (opts: { json?: boolean }) => {
      const prices = await withDatabase(({ pool }) => priceBook.listPrices(pool));
      if (opts.json === true) return printJson({ data: prices.map(priceJson) });
      printTable(['model', 'prompt', 'completion', 'request', 'context', 'max_out', 'source'], prices.map((p) => {
        const json = priceJson(p);
        return [json.model, json.prompt, json.completion, json.request, json.context_length, json.max_completion_tokens, json.source];
      }), { alignRight: [4, 5] });
    });
  cmd.command('pin').description('pin a model\'s price (refreshes from upstream leave it alone)')
    .argument('<model>', 'model id, e.g. vendor/name', nonEmpty('model'))
    .requiredOption('--prompt <usd>', 'per prompt token', price).requiredOption('--completion <usd>', 'per completion token', price)
    .option('--request <usd>', 'per request', price).option('--image <usd>', 'per input image', price)
    .option('--web-search <usd>', 'per search', price).option('--internal-reasoning <usd>', 'per reasoning token', price)
    .option('--input-cache-read <usd>', 'per cached prompt token read', price).option('--input-cache-write <usd>', 'per prompt token written to cache', price)
    .option('--context-length <tokens>', 'context window', tokens).option('--max-completion-tokens <tokens>', 'output limit', tokens)
    .option('--note <text>', 'why').option('--json', 'machine output')
    .action(async (model: string, opts: PinOptions) => {
      const pinned = await withDatabase(({ pool }) => priceBook.pinPrice(pool, {
        modelId: model, promptAtto: opts.prompt, completionAtto: opts.completion, requestAtto: opts.request ?? 0n,
        imageAtto: opts.image ?? 0n, webSearchAtto: opts.webSearch ?? 0n, internalReasoningAtto: opts.internalReasoning ?? 0n,
        inputCacheReadAtto: opts.inputCacheRead ?? 0n, inputCacheWriteAtto: opts.inputCacheWrite ?? 0n,
        contextLength: opts.contextLength ?? null, maxCompletionTokens: opts.maxCompletionTokens ?? null,
      }, opts.note ?? null));
      if (opts.json === true) return printJson(priceJson(pinned));
      printRecord(priceJson(pinned));
      note('replicas apply it within PRICE_BOOK_RELOAD_MS');
    });
  cmd.command('unpin').description('remove an operator price (the next refresh restores the upstream one)')
    .argument('<model>', 'model id', nonEmpty('model'))
    .action(async (model: string) => {
      if (!(await withDatabase(({ pool }) => priceBook.unpinPrice(pool, model)))) throw notFound(`no operator price for ${model}`);
      printRecord({ model, unpinned: 'yes' });
    });
}
