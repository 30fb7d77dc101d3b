/**
 * The dashboard's stylesheet.
 * Kept as a string in TypeScript so it compiles into dist/ with the server and needs no
 * asset copying; it must not contain backticks or "${" (the browser test exercises it).
 */
export const DASHBOARD_CSS = String.raw`:root {
  --bg: #f4f6f9; --card: #ffffff; --ink: #1e293b; --muted: #64748b; --line: #e2e8f0;
  --accent: #2563eb; --danger: #dc2626; --warn: #b45309;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  font-size: 14px; color: var(--ink); background: var(--bg);
}
* { box-sizing: border-box; }
body { margin: 0; }
header { display: flex; align-items: baseline; gap: 12px; padding: 14px 24px; background: #0f172a; color: #f8fafc; }
header h1 { margin: 0; font-size: 20px; letter-spacing: 0.02em; }
header .subtitle { color: #94a3b8; }
header .muted { color: #94a3b8; }
main { padding: 20px 24px; max-width: 1280px; margin: 0 auto; }
.spacer { flex: 1; }
.muted { color: var(--muted); font-size: 12px; }
.error { color: var(--danger); margin: 6px 0 0; min-height: 0; }
.error:empty { display: none; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 16px 18px; box-shadow: 0 1px 2px rgba(15, 23, 42, 0.05); }
.card h2 { font-size: 15px; margin: 0 0 10px; }
.card-head { display: flex; align-items: baseline; justify-content: space-between; gap: 12px; flex-wrap: wrap; }
.card.alert { border-color: #fcd34d; }
.wide { grid-column: 1 / -1; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 16px; margin-top: 16px; }
.login { max-width: 460px; margin: 60px auto; }
.login form { display: flex; gap: 8px; }
.login input { flex: 1; }
input, select, button { font: inherit; padding: 6px 10px; border: 1px solid #cbd5e1; border-radius: 6px; background: #fff; color: var(--ink); }
button { background: var(--accent); border-color: var(--accent); color: #fff; cursor: pointer; }
button.secondary { background: #fff; color: var(--ink); border-color: #cbd5e1; }
.toolbar { display: flex; align-items: center; gap: 12px; margin-bottom: 16px; }
.toolbar label { display: flex; align-items: center; gap: 8px; }
.stats { display: flex; gap: 28px; flex-wrap: wrap; margin-bottom: 10px; }
.stats div { display: flex; flex-direction: column; }
.label { color: var(--muted); font-size: 12px; }
.big { font-size: 20px; font-weight: 600; font-variant-numeric: tabular-nums; }
.chart { width: 100%; min-height: 40px; }
table { width: 100%; border-collapse: collapse; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line); white-space: nowrap; }
th { color: var(--muted); font-weight: 500; font-size: 12px; }
td.key { max-width: 260px; overflow: hidden; text-overflow: ellipsis; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
.money, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 13px; }
.big.money { font-size: 18px; }
.negative { color: var(--danger); }
td.empty { color: var(--muted); text-align: center; }
.badge { display: inline-block; min-width: 24px; padding: 1px 8px; border-radius: 999px; background: #e2e8f0; text-align: center; font-size: 13px; }
.alert .badge { background: #fef3c7; color: var(--warn); }
.state.unresolved { color: var(--danger); }
.state.awaiting_cost { color: var(--warn); }
`;
