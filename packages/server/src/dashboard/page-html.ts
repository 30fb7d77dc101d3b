/**
 * The dashboard's HTML shell: static, holds no data; public so the login form can load.
 * Kept as a string in TypeScript so it compiles into dist/ with the server and needs no
 * asset copying; it must not contain backticks or "${" (the browser test exercises it).
 */
export const DASHBOARD_HTML = String.raw`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>Metergate dashboard</title>
<link rel="stylesheet" href="ui/uPlot.min.css">
<link rel="stylesheet" href="ui/dashboard.css">
<script src="ui/uPlot.iife.min.js" defer></script>
<script src="ui/dashboard.js" defer></script>
</head>
<body>
<header>
  <h1>Metergate</h1>
  <span class="subtitle">operator dashboard</span>
  <span class="spacer"></span>
  <span id="updated" class="muted"></span>
</header>

<main>
  <section id="login" class="card login" hidden>
    <h2>Admin login</h2>
    <p class="muted">Paste the proxy's <code>ADMIN_TOKEN</code>. It stays in this tab only (sessionStorage) and is sent as a Bearer token with every request.</p>
    <form id="login-form" autocomplete="off">
      <input id="token" type="password" placeholder="admin token" aria-label="admin token" required>
      <button type="submit">Log in</button>
    </form>
    <p id="login-error" class="error" role="alert"></p>
  </section>

  <div id="dashboard" hidden>
    <div class="toolbar">
      <label>Range
        <select id="range">
          <option value="hour" selected>Last 24 hours (hourly)</option>
          <option value="day">Last 30 days (daily)</option>
        </select>
      </label>
      <button id="refresh" type="button">Refresh</button>
      <span class="spacer"></span>
      <button id="logout" type="button" class="secondary">Log out</button>
    </div>

    <section id="spend-card" class="card wide">
      <div class="card-head">
        <h2>Spend over time</h2>
        <span id="spend-range" class="muted"></span>
      </div>
      <div class="stats">
        <div><span class="label">charged (USD)</span><span id="spend-total" class="big money">-</span></div>
        <div><span class="label">upstream cost (USD)</span><span id="spend-upstream" class="big money">-</span></div>
        <div><span class="label">margin (USD)</span><span id="spend-margin" class="big money">-</span></div>
        <div><span class="label">requests</span><span id="spend-requests" class="big">-</span></div>
      </div>
      <div id="chart" class="chart"></div>
      <p class="panel-error error"></p>
    </section>

    <div class="grid">
      <section id="users-card" class="card">
        <h2>Top users</h2>
        <table><thead><tr><th>user</th><th class="num">requests</th><th class="num">tokens</th><th class="num">spend (USD)</th></tr></thead>
          <tbody id="top-users"></tbody></table>
        <p class="panel-error error"></p>
      </section>

      <section id="models-card" class="card">
        <h2>Top models</h2>
        <table><thead><tr><th>model</th><th class="num">requests</th><th class="num">tokens</th><th class="num">spend (USD)</th></tr></thead>
          <tbody id="top-models"></tbody></table>
        <p class="panel-error error"></p>
      </section>

      <section id="low-card" class="card">
        <div class="card-head">
          <h2>Balances running low</h2>
          <label class="muted">below USD <input id="low-threshold" value="1.00" size="8" inputmode="decimal"></label>
        </div>
        <table><thead><tr><th>user</th><th class="num">balance (USD)</th><th class="num" title="held for calls whose cost is not known yet">held (USD)</th><th class="num" title="balance less held: what new calls can use">available (USD)</th><th class="num">spend (USD)</th></tr></thead>
          <tbody id="low-balances"></tbody></table>
        <p class="panel-error error"></p>
      </section>

      <section id="rps-card" class="card">
        <div class="card-head">
          <h2>Live requests per second</h2>
          <span class="muted">this replica, from /metrics</span>
        </div>
        <div class="stats">
          <div><span class="label">all routes</span><span id="rps-value" class="big">…</span></div>
          <div><span class="label">chat completions</span><span id="rps-chat" class="big">…</span></div>
        </div>
        <div id="rps-chart" class="chart"></div>
        <p class="panel-error error"></p>
      </section>

      <section id="unsettled-card" class="card wide">
        <div class="card-head">
          <h2>Unsettled requests <span id="unsettled-count" class="badge">-</span></h2>
          <span class="muted">in flight, awaiting cost, or unresolved</span>
        </div>
        <table><thead><tr><th>request</th><th>user</th><th>model</th><th>state</th><th class="num">age</th><th>reason</th></tr></thead>
          <tbody id="unsettled"></tbody></table>
        <p class="panel-error error"></p>
      </section>
    </div>
  </div>
</main>
</body>
</html>
`;
