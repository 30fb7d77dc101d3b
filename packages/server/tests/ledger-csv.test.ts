import type { LedgerEntry } from '@metergate/db';
import { parseCsv } from '@metergate/testkit';
import { LEDGER_CSV_COLUMNS, ledgerCsvRow } from '../src/http/ledger-csv.js';

function entry(overrides: Partial<LedgerEntry>): LedgerEntry {
  return {
    id: '7', userId: 'alice', kind: 'usage', amountNano: -123n, upstreamCostNano: 100n, multiplierPpm: 1_230_000n,
    balanceAfterNano: -5n, requestId: '00000000-0000-4000-8000-000000000001', generationId: 'gen-1', model: 'openai/gpt-4o',
    promptTokens: 3, completionTokens: 4, note: null, createdAt: new Date(Date.UTC(2025, 0, 2, 3, 4, 5)),
    requestedModel: null, provider: 'OpenAI', isByok: false, endpoint: 'chat', cachedTokens: null, cacheWriteTokens: null, reasoningTokens: null, ...overrides,
  };
}

function fields(e: LedgerEntry): Record<string, string> {
  const [row] = parseCsv(ledgerCsvRow(e));
  return Object.fromEntries(LEDGER_CSV_COLUMNS.map((column, index) => [column, row![index]!]));
}

QUnit.module('ledger CSV rows', () => {
  QUnit.test('free text a spreadsheet would run as a formula gets a leading quote; numbers never do', (assert) => {
    const row = fields(entry({ model: '=HYPERLINK("http://x","y")', generationId: '@SUM(A1)', note: '+1-2' }));
    assert.strictEqual(row.model, `'=HYPERLINK("http://x","y")`);
    assert.strictEqual(row.generation_id, `'@SUM(A1)`);
    assert.strictEqual(row.note, `'+1-2`);
    assert.strictEqual(row.amount_usd, '-0.000000123', 'a negative amount stays a number');
    assert.strictEqual(row.balance_after_usd, '-0.000000005');
    const tab = fields(entry({ kind: 'adjustment', note: '\t=1', model: null, generationId: null, requestId: null }));
    assert.strictEqual(tab.note, `'\t=1`, 'a tab before a formula too (and the field is quoted for its edge space)');
    assert.strictEqual(tab.model, '', 'null stays empty');
    const upstreamText = fields(entry({ provider: '=cmd', requestedModel: '-x', isByok: true }));
    assert.deepEqual([upstreamText.provider, upstreamText.requested_model, upstreamText.is_byok], [`'=cmd`, `'-x`, 'true'],
      'provider and requested model are free text too; is_byok a plain boolean');
  });

  QUnit.test('ordinary text is written as it is, quoted only where RFC 4180 needs it', (assert) => {
    const row = fields(entry({ note: 'refund, see "ticket 12"\r\nthanks', model: 'a-b/c=d' }));
    assert.strictEqual(row.note, 'refund, see "ticket 12"\r\nthanks');
    assert.strictEqual(row.model, 'a-b/c=d', 'only a leading character makes a formula');
    assert.true(ledgerCsvRow(entry({ note: 'x,y' })).includes('"x,y"'));
  });
});
