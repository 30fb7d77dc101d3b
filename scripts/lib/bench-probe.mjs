// What the benchmark reads besides latencies: process CPU from /proc, and (for --profile)
// Postgres's own counters: pg_stat_statements, pg_stat_database.xact_commit and the next xid.
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';

const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** utime, stime, cutime, cstime of one process in ms, and its parent pid; null if gone. */
function procStat(pid) {
  let text;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // The command name (in parentheses) may hold spaces: count fields after its closing one.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const ms = (i) => (Number(fields[i]) * 1000) / CLK_TCK;
  return { ppid: Number(fields[1]), own: ms(11) + ms(12), children: ms(13) + ms(14) };
}

/** CPU ms used so far by one process (its own threads only). */
export function processCpuMs(pid) {
  return procStat(pid)?.own ?? 0;
}

/**
 * CPU ms used so far by a whole Postgres cluster: the postmaster, its live children
 * (backends, walwriter, checkpointer...) and, through cutime/cstime, the children it has
 * already reaped (a backend whose connection closed).
 */
export function postgresCpuMs(clusterDir) {
  const postmaster = Number(readFileSync(path.join(clusterDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
  const root = procStat(postmaster);
  if (root === null) return 0;
  let total = root.own + root.children;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = procStat(entry);
    if (stat !== null && stat.ppid === postmaster) total += stat.own;
  }
  return total;
}

/** Counters read before and after a profiled run; the difference is what the run did. */
export async function readCounters(client, withStatements) {
  const db = await client.query(`SELECT xact_commit::bigint AS commits,
      pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS next_xid
    FROM pg_stat_database WHERE datname = current_database()`);
  const statements = withStatements
    ? (await client.query(`SELECT queryid::text AS id, query, calls::bigint AS calls, total_exec_time AS total_ms
        FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())`)).rows
    : [];
  // Postgres 17 keeps WAL syncs here (18 moves them to pg_stat_io); timed with track_wal_io_timing.
  const wal = (await client.query('SELECT wal_sync::bigint AS syncs, wal_sync_time AS sync_ms FROM pg_stat_wal')).rows[0];
  return { commits: Number(db.rows[0].commits), nextXid: Number(db.rows[0].next_xid), walSyncs: Number(wal.syncs), walSyncMs: wal.sync_ms, statements };
}

/** Per statement: calls and exec time during the run (after minus before), busiest first. */
export function statementDeltas(before, after) {
  const old = new Map(before.statements.map((s) => [s.id, s]));
  const deltas = [];
  for (const s of after.statements) {
    const prior = old.get(s.id);
    const calls = Number(s.calls) - Number(prior?.calls ?? 0);
    // The benchmark's own reads of the statistics are not the replica's work.
    if (calls <= 0 || /pg_stat_statements|pg_stat_database|pg_current_snapshot|pg_stat_wal/.test(s.query)) continue;
    deltas.push({ query: s.query, calls, totalMs: s.total_ms - (prior?.total_ms ?? 0) });
  }
  return deltas.sort((a, b) => b.totalMs - a.totalMs);
}
