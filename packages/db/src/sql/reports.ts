/**
 * Operator reports over the books, one concept per file under reports/: the ledger (filtered,
 * keyset-paged, streamed), usage summaries (the planner over the rollups), the users and
 * requests lists, and the rollup check. This barrel keeps `reports.*` one namespace for callers.
 */
export { ceilTo, floorTo } from './periods.js';
export { ReportQueryError } from './reports/errors.js';
export * from './reports/ledger.js';
export * from './reports/usage.js';
export * from './reports/users.js';
export * from './reports/requests.js';
export * from './reports/rollup-check.js';
