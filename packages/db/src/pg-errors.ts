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
const UNAVAILABLE_SOCKET_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH']);

/**
 * "The database is not reachable right now" (answer 503 and retry later), as opposed to a bad
 * query (a bug: 500). Decided by SQLSTATE class 08 and the shutdown/overload states, by the
 * socket error code, or — for node-postgres's own connection errors, which carry neither —
 * by the absence of any SQLSTATE on an error raised by a database call.
 */
export function isDatabaseUnavailable(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  // Socket codes first: 'EPIPE' is five characters and would pass for a SQLSTATE.
  if (typeof code === 'string' && UNAVAILABLE_SOCKET_CODES.has(code)) return true;
  const state = sqlState(error);
  if (state !== undefined) return state.startsWith('08') || UNAVAILABLE_STATES.has(state);
  if (typeof code === 'string') return false;
  return error instanceof Error;
}
