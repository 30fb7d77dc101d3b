// One scenario's measurements, gathered over several slices (the rounds of the benchmark)
// and summarized once: percentiles over every sample, throughput over the summed time.

export function emptyRun(name) {
  return { name, ms: [], ttfb: [], errors: {}, seconds: 0, inWindow: 0, windowSeconds: 0, cpuMs: 0, cpuMsByProcess: {}, slices: 0 };
}

function addAll(into, from) {
  for (const [key, value] of Object.entries(from)) into[key] = (into[key] ?? 0) + value;
}

/** Adds one slice (the load generator's answer plus what was read around it). */
export function addSlice(run, slice, cpuMsByProcess, counters) {
  for (const v of slice.ms) run.ms.push(v);
  for (const v of slice.ttfb) run.ttfb.push(v);
  addAll(run.errors, slice.errors);
  run.seconds += slice.seconds;
  run.inWindow += slice.inWindow;
  run.windowSeconds += slice.windowSeconds;
  run.cpuMs += slice.cpuMs;
  run.slices += 1;
  addAll(run.cpuMsByProcess, cpuMsByProcess);
  if (counters !== null) {
    for (const key of ['commits', 'xids', 'walSyncs', 'walSyncMs']) run[key] = (run[key] ?? 0) + counters[key];
    const byQuery = new Map((run.statements ?? []).map((s) => [s.query, s]));
    for (const s of counters.statements) {
      const known = byQuery.get(s.query);
      if (known === undefined) byQuery.set(s.query, { ...s });
      else { known.calls += s.calls; known.totalMs += s.totalMs; }
    }
    run.statements = [...byQuery.values()].sort((a, b) => b.totalMs - a.totalMs);
  }
}

function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

/** The figures the report prints. */
export function summarize(run) {
  const ms = [...run.ms].sort((a, b) => a - b);
  const ttfb = [...run.ttfb].sort((a, b) => a - b);
  return {
    ...run, ms: undefined, ttfb: undefined,
    ok: ms.length, failures: Object.values(run.errors).reduce((a, b) => a + b, 0),
    rps: run.inWindow / run.windowSeconds, p50: percentile(ms, 50), p99: percentile(ms, 99),
    ttfbP50: percentile(ttfb, 50), ttfbP99: percentile(ttfb, 99),
  };
}
