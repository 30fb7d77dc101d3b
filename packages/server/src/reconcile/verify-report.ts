import type { VerifyReport } from '@metergate/db';
import type { Config } from '../config.js';

/** How long an in_flight request of a silent replica may stay so before it is a breach. */
export function staleInFlightMs(config: Pick<Config, 'replicaLeaseMs' | 'reconcileIntervalMs'>): number {
  // The lease, then one reconcile interval (+20 % jitter) and about one more for the pass.
  return config.replicaLeaseMs + Math.ceil(2.4 * config.reconcileIntervalMs);
}

/** The human summary `npm run verify` prints. */
export function formatReport(report: VerifyReport): string {
  const lines = [
    `metergate verify at ${report.checkedAt.toISOString()}: ${report.ok ? 'OK' : 'BREACHES FOUND'}`,
    `  users: ${report.totals.users}, ledger entries: ${report.totals.ledgerEntries}`,
    `  requests by state: ${JSON.stringify(report.totals.requestsByState)}`,
  ];
  if (Object.keys(report.totals.unresolvedByReason).length > 0) {
    lines.push(`  unresolved (for an operator to settle) by reason: ${JSON.stringify(report.totals.unresolvedByReason)}`);
  }
  const checks: Array<[string, { count: number; sample: unknown[] }]> = [
    ['balance = Σ ledger = credits − usage, for every user', report.breaches.balance],
    ['held = Σ holds of open requests, for every user', report.breaches.held],
    ['open calls (users, keys) and key holds = their open requests', report.breaches.controls],
    ['every settled request has exactly one usage entry', report.breaches.settledWithoutOneUsage],
    ['every usage entry belongs to a settled request', report.breaches.usageWithoutSettledRequest],
    ['usage entries match their requests (user, cost)', report.breaches.usageMismatch],
    ['no request left in_flight past lease + reconcile interval', report.breaches.staleInFlight],
  ];
  if (report.rollupsChecked) checks.push(['every usage rollup equals the sums over the ledger (rows differing)', report.breaches.rollups]);
  for (const [name, result] of checks) {
    lines.push(`  [${result.count === 0 ? 'ok' : 'BREACH'}] ${name}${result.count === 0 ? '' : `: ${result.count}`}`);
    for (const item of result.sample) lines.push(`      ${JSON.stringify(item)}`);
  }
  if (!report.rollupsChecked) lines.push('  [skipped] usage rollups (--rollups: a full scan of the ledger per rollup)');
  return lines.join('\n');
}
