import { randomBytes } from 'node:crypto';
import { InvalidArgumentError, type Command } from 'commander';
import { formatNano, webhooks, WEBHOOK_EVENT_TYPES } from '@metergate/db';
import { withDatabase } from '../db.js';
import { notFound, usage } from '../errors.js';
import { printJson, printRecord, printTable } from '../output.js';
import { amountNano, nonEmpty } from '../parse.js';

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Webhooks (the admin API's /admin/webhooks), their delivery log, replays of an event, and the
 * per-user low-balance threshold. Deliveries are made by the running replicas.
 */
export function registerWebhooks(program: Command): void {
  const cmd = program.command('webhooks').description('webhook endpoints, deliveries and replays (events: ' + WEBHOOK_EVENT_TYPES.join(', ') + ')');
  cmd.command('create').description('register an endpoint; the secret signs each delivery (Metergate-Signature)')
    .argument('<url>', 'http(s) URL', nonEmpty('url')).requiredOption('--secret <secret>', 'at least 16 characters')
    .requiredOption('--events <types>', 'comma-separated event types', eventTypes).option('--json', 'machine output')
    .action(async (url: string, opts: { secret: string; events: string[]; json?: boolean }) => {
      if (!/^https?:\/\/\S+$/i.test(url)) throw usage('the url must be http:// or https://');
      if (opts.secret.length < 16 || opts.secret.length > 256) throw usage('the secret must be 16 to 256 characters');
      const hook = await withDatabase(({ pool }) => webhooks.createWebhook(pool, { id: `wh_${randomBytes(9).toString('base64url')}`, url, secret: opts.secret, events: opts.events }));
      const shown = { id: hook.id, url: hook.url, events: hook.events, created_at: hook.createdAt.toISOString() };
      if (opts.json === true) return printJson(shown);
      printRecord({ ...shown, events: hook.events.join(', ') });
    });
  cmd.command('list').description('live endpoints').option('--json', 'machine output').action(async (opts: { json?: boolean }) => {
    const hooks = await withDatabase(({ pool }) => webhooks.listWebhooks(pool));
    if (opts.json === true) return printJson(hooks.map((h) => ({ id: h.id, url: h.url, events: h.events, created_at: h.createdAt.toISOString() })));
    printTable(['id', 'url', 'events'], hooks.map((h) => [h.id, h.url, h.events.join(', ')]));
  });
  cmd.command('delete').description('stop deliveries to an endpoint').argument('<id>', 'webhook id', nonEmpty('id')).action(async (id: string) => {
    if (!(await withDatabase(({ pool }) => webhooks.deleteWebhook(pool, id)))) throw notFound(`no webhook ${id}`);
    process.stdout.write(`deleted ${id}\n`);
  });
  cmd.command('deliveries').description('the delivery log of an endpoint, newest first').argument('<id>', 'webhook id', nonEmpty('id'))
    .option('--limit <n>', 'rows (≤ 1000)', (text) => Number(text), 50).option('--json', 'machine output')
    .action(async (id: string, opts: { limit: number; json?: boolean }) => {
      if (!Number.isInteger(opts.limit) || opts.limit < 1 || opts.limit > 1000) throw usage('--limit must be 1 to 1000');
      const rows = await withDatabase(({ pool }) => webhooks.listDeliveries(pool, id, opts.limit, null));
      if (rows === null) throw notFound(`no webhook ${id}`);
      if (opts.json === true) return printJson(rows);
      printTable(['id', 'event', 'type', 'state', 'attempts', 'last status', 'last error'],
        rows.map((r) => [r.id, r.eventId, r.eventType, r.state, r.attempts, r.lastStatus, r.lastError?.slice(0, 60) ?? null]));
    });
  cmd.command('replay').description('deliver an event again (to every subscribed endpoint, or --webhook one), due now, same event id')
    .argument('<event-id>', 'event id (Metergate-Event-Id)', eventId).option('--webhook <id>', 'only this endpoint')
    .action(async (id: string, opts: { webhook?: string }) => {
      const n = await withDatabase(({ pool }) => webhooks.replayEvent(pool, id, opts.webhook ?? null));
      if (n === null) throw notFound(`no event ${id}`);
      process.stdout.write(`${n} deliver${n === 1 ? 'y' : 'ies'} of ${id} queued\n`);
    });
  cmd.command('alert').description('a user\'s low-balance threshold for balance.low events ("none" clears)')
    .argument('<user>', 'user id', nonEmpty('user id')).argument('<usd>', 'threshold in USD, or "none"', (text: string) => (text === 'none' ? 'none' : amountNano(text)))
    .action(async (userId: string, given: bigint | 'none') => {
      const threshold = given === 'none' ? null : given;
      if (threshold !== null && threshold < 0n) throw usage('the threshold cannot be negative');
      if (!(await withDatabase(({ pool }) => webhooks.setBalanceAlert(pool, userId, threshold)))) throw notFound(`no user ${userId}`);
      process.stdout.write(`${userId}: balance.low below ${threshold === null ? 'none' : `${formatNano(threshold)} USD`}\n`);
    });
}

function eventTypes(text: string): string[] {
  const list = text.split(',').map((t) => t.trim()).filter((t) => t !== '');
  const bad = list.find((t) => !(WEBHOOK_EVENT_TYPES as readonly string[]).includes(t));
  if (bad !== undefined || list.length === 0) throw new InvalidArgumentError(`event types are ${WEBHOOK_EVENT_TYPES.join(', ')}; got ${JSON.stringify(text)}`);
  return [...new Set(list)];
}

function eventId(text: string): string {
  if (!UUID_RE.test(text)) throw new InvalidArgumentError(`an event id is a UUID; got ${JSON.stringify(text)}`);
  return text;
}
