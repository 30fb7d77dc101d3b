// Formatting of `npm run bench`: the summary tables, the ratios against their targets, the
// per-run details and the --profile breakdown. Pure functions of the measurements.

// The targets the benchmark is judged against (Metergate compared with the bare proxy).
export const TARGETS = {
  addedP50Ms: 1.5, addedP99Ms: 4, addedTtfbP50Ms: 1, throughputRatio: 0.15,
};

const f = (value, digits = 2) => (value === null || value === undefined || Number.isNaN(value) ? '-' : value.toFixed(digits));

export function table(headers, rows) {
  const line = (cells) => `| ${cells.join(' | ')} |`;
  return [line(headers), line(headers.map(() => '---')), ...rows.map(line)].join('\n');
}

/** The headline table for one body kind: one row per path. */
export function summaryTable(kind, paths, results, { concurrency, users }) {
  const stream = kind === 'stream';
  const headers = ['path', `c=${concurrency}, ${users} users: req/s`, 'c=1: p50 / p99 ms'];
  if (stream) headers.push('c=1: TTFB p50 / p99 ms');
  headers.push('failures');
  const rows = paths.map((p) => {
    const load = results.get(`${p.key}|${kind}|load`);
    const one = results.get(`${p.key}|${kind}|c1`);
    const cells = [p.label, f(load?.rps, 0), `${f(one?.p50)} / ${f(one?.p99)}`];
    if (stream) cells.push(`${f(one?.ttfbP50)} / ${f(one?.ttfbP99)}`);
    cells.push(String((load?.failures ?? 0) + (one?.failures ?? 0)));
    return cells;
  });
  return table(headers, rows);
}

function verdict(pass) {
  return pass ? 'PASS' : 'MISS';
}

/** The ratios of one Metergate replica against the bare proxy, each next to its target. */
export function ratioTable(metergate, results, { concurrency, users }) {
  const shape = `c=${concurrency}, ${users} users`;
  const get = (key, kind, level) => results.get(`${key}|${kind}|${level}`);
  const m1 = get(metergate.key, 'json', 'c1'); const b1 = get('bare', 'json', 'c1');
  const ms1 = get(metergate.key, 'stream', 'c1'); const bs1 = get('bare', 'stream', 'c1');
  const mj = get(metergate.key, 'json', 'load'); const bj = get('bare', 'json', 'load');
  const ms = get(metergate.key, 'stream', 'load'); const bs = get('bare', 'stream', 'load');
  const rows = [];
  const added = (label, value, target) => rows.push([label, `${f(value)} ms`, `≤ ${target} ms`, verdict(value <= target)]);
  const ratio = (label, value) => rows.push([label, `${f(value, 3)}×`, `≥ ${TARGETS.throughputRatio}×`, verdict(value >= TARGETS.throughputRatio)]);
  added('c=1 JSON: added p50 over bare proxy', m1.p50 - b1.p50, TARGETS.addedP50Ms);
  added('c=1 JSON: added p99 over bare proxy', m1.p99 - b1.p99, TARGETS.addedP99Ms);
  added('c=1 stream: added TTFB p50 over bare proxy', ms1.ttfbP50 - bs1.ttfbP50, TARGETS.addedTtfbP50Ms);
  ratio(`${shape}, JSON: throughput / bare proxy`, mj.rps / bj.rps);
  ratio(`${shape}, stream: throughput / bare proxy`, ms.rps / bs.rps);
  return table([`${metergate.label} vs bare proxy`, 'measured', 'target', 'verdict'], rows);
}

/** Every run, as measured: the source of the summary tables. */
export function detailTable(runs) {
  return table(['run', 'requests', 'seconds', 'req/s', 'p50 ms', 'p99 ms', 'TTFB p50 ms', 'failures', 'load gen CPU'],
    runs.map((r) => [r.name, String(r.ok), f(r.seconds, 1), f(r.rps, 0), f(r.p50), f(r.p99), f(r.ttfbP50),
      r.failures === 0 ? '0' : `${r.failures} ${JSON.stringify(r.errors)}`, `${f((100 * r.cpuMs) / (r.seconds * 1000), 0)} %`]));
}

/** CPU per successful call of each process, per run. */
export function cpuTable(runs, processNames) {
  return table(['run', ...processNames.map((n) => `${n} CPU ms/call`)],
    runs.map((r) => [r.name, ...processNames.map((n) => f(r.cpuMsByProcess[n] / Math.max(1, r.ok), 3))]));
}

/** --profile: what one Metergate run cost Postgres, per call. */
export function profileBlock(run) {
  const calls = Math.max(1, run.ok);
  const statements = run.statements;
  const total = statements.reduce((a, s) => a + s.calls, 0);
  const lines = [
    `${run.name}: ${run.ok} calls`,
    `  round trips (statements) per call: ${f(total / calls)}; commits per call (pg_stat_database.xact_commit delta): ${f(run.commits / calls)};` +
    ` write transactions per call (xids assigned, exact; each commit of one waits for its WAL flush): ${f(run.xids / calls)};`,
    `  WAL syncs per call: ${f(run.walSyncs / calls)}, mean ${f(run.walSyncMs / Math.max(1, run.walSyncs), 3)} ms each (pg_stat_wal, walwriter's included;` +
    ` a commit's wait for its flush is NOT in the statement times below); replica CPU per call: ${f(run.replicaCpuMs / calls, 3)} ms`,
    '',
    table(['statement (pg_stat_statements, normalized)', 'calls/request', 'mean ms', 'ms/request'],
      statements.map((s) => [`\`${s.query.replace(/\s+/g, ' ').slice(0, 110).replace(/\|/g, '\\|')}\``, f(s.calls / calls), f(s.totalMs / s.calls, 3), f(s.totalMs / calls, 3)])),
  ];
  return lines.join('\n');
}
