/** SQLSTATEs we act on. Postgres errors are handled by code, never by message text. */
export const SqlState = Object.freeze({
  uniqueViolation: '23505',
  foreignKeyViolation: '23503',
  checkViolation: '23514',
  lockNotAvailable: '55P03',
  queryCanceled: '57014',
  adminShutdown: '57P01',
  crashShutdown: '57P02',
  cannotConnectNow: '57P03',
  idleInTransactionTimeout: '25P03',
  tooManyConnections: '53300',
  ledgerAppendOnly: 'MGL01',
});

export function sqlState(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' && code.length === 5 ? code : undefined;
}

const UNAVAILABLE_STATES = new Set<string>([
  SqlState.adminShutdown, SqlState.crashShutdown, SqlState.cannotConnectNow,
  SqlState.tooManyConnections, SqlState.idleInTransactionTimeout,
]);
/** Node's errno codes for a socket that cannot reach, or lost, the server. */
const UNAVAILABLE_SOCKET_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN',
]);
/**
 * node-postgres (8.x) raises these when a connection is lost, cannot be made in time, or the
 * pool is gone, as plain `Error`s with no `code` and nothing else to tell them apart: their
 * exact text is the driver's only signal (pinned by packages/db/tests/pg-errors.test.ts
 * against the installed driver). Matched whole, on a plain Error only, never as a pattern.
 */
const DRIVER_CONNECTION_ERRORS = new Set([
  'Connection terminated unexpectedly',
  'Connection terminated',
  'Connection terminated due to connection timeout',
  'Client has encountered a connection error and is not queryable',
  'Client was closed and is not queryable',
  'Query read timeout',
  'timeout exceeded when trying to connect',
  'timeout expired',
  'Cannot use a pool after calling end on the pool',
]);
const CAUSE_DEPTH_MAX = 4;

/**
 * "The database is not reachable right now" (answer 503 and retry later), as opposed to
 * anything else, which is a bug or bad input (500 or 400) however little it says about
 * itself. Decided only by evidence: SQLSTATE class 08 and the shutdown/overload states, a
 * socket errno, or one of the driver's connection errors above — also when it is the
 * `cause` of a wrapping error. An error without any of these (a RangeError from a stack
 * overflow, a TypeError) is never "unavailable".
 */
export function isDatabaseUnavailable(error: unknown): boolean {
  let current = error;
  for (let depth = 0; depth <= CAUSE_DEPTH_MAX && typeof current === 'object' && current !== null; depth += 1) {
    if (isUnavailableItself(current)) return true;
    current = (current as { cause?: unknown }).cause;
  }
  return false;
}

function isUnavailableItself(error: object): boolean {
  const code = (error as { code?: unknown }).code;
  // Socket codes first: 'EPIPE' is five characters and would pass for a SQLSTATE.
  if (typeof code === 'string' && UNAVAILABLE_SOCKET_CODES.has(code)) return true;
  const state = sqlState(error);
  if (state !== undefined) return state.startsWith('08') || UNAVAILABLE_STATES.has(state);
  return code === undefined && Object.getPrototypeOf(error) === Error.prototype
    && DRIVER_CONNECTION_ERRORS.has((error as Error).message);
}
