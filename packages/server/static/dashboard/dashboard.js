// @ts-check
// Metergate dashboard: plain DOM, no framework, an ES module served as it is (type-checked by
// tsc through this folder's tsconfig.json). Every data call sends the admin token from
// sessionStorage; every value from the server is inserted as text (never as HTML).
import { nanoToUsd, usdToNano } from './money.js';

const TOKEN_KEY = 'metergate.adminToken';
const REFRESH_MS = 30000;
const RPS_POLL_MS = 2000;
const RPS_POINTS_MAX = 90;
const TOP_ROWS = 10;
const UNSETTLED_PAGE = 100;
const UNSETTLED_SHOWN = 20;

/**
 * The admin API's answers, only the fields read here.
 * @typedef {{ key: string, requests: number, prompt_tokens: number, completion_tokens: number, charged_usd: string, upstream_cost_usd: string }} UsageRow
 * @typedef {{ id: string, balance_usd: string, held_usd: string, available_usd: string, spend_usd?: string, total_usage_usd?: string }} UserRow
 * @typedef {{ id: string, user_id: string, model: string, state: string, started_at: string, reason: string | null }} RequestRow
 * @typedef {{ period: string, amount_usd: string, spent_usd: string, held_usd: string, resets_at: string | null }} SpendLimit
 * @typedef {{ spend: SpendLimit[], requests_per_minute: number | null, requests_this_minute: number, concurrent_calls: number | null, open_calls: number, models: { allow: string[] | null, deny: string[] | null } }} Limits
 * @typedef {{ id: string, url: string, events: string[] }} WebhookRow
 */
/**
 * One page of a list.
 * @template T
 * @typedef {{ data: T[], next_cursor?: string | null }} Page
 */
/** @typedef {{ at: number, total: number, chat: number }} RpsSample */
/** @typedef {{ groupBy: 'hour' | 'day', start: number, stepMs: number, count: number, label: string }} Range */
/** A table row: each cell's text and optional class. @typedef {Array<[unknown, string?]>} Row */

const state = {
  /** @type {string | null} */ token: null,
  /** @type {'hour' | 'day'} */ range: 'hour',
  /** @type {uPlot | null} */ chart: null,
  /** @type {uPlot | null} */ rpsChart: null,
  /** @type {ReturnType<typeof setInterval>[]} */ timers: [],
  rps: {
    /** @type {RpsSample | null} */ last: null,
    /** @type {number[]} */ xs: [],
    /** @type {number[]} */ total: [],
    /** @type {number[]} */ chat: [],
  },
};

class AuthError extends Error {}

/**
 * @param {string} id
 * @returns {HTMLElement}
 */
function byId(id) {
  const element = document.getElementById(id);
  if (element === null) throw new Error('the page has no #' + id);
  return element;
}

/**
 * @param {string} id
 * @returns {HTMLInputElement}
 */
function inputById(id) {
  const element = byId(id);
  if (!(element instanceof HTMLInputElement)) throw new Error('#' + id + ' is not an input');
  return element;
}

/**
 * @param {unknown} text
 * @param {string} [className]
 */
function cell(text, className) {
  const td = document.createElement('td');
  td.textContent = text === null || text === undefined ? '' : String(text);
  if (className) td.className = className;
  return td;
}

/**
 * @param {HTMLElement} tbody
 * @param {Row[]} rows
 * @param {string} emptyText
 */
function fillTable(tbody, rows, emptyText) {
  tbody.replaceChildren();
  if (rows.length === 0) {
    const tr = document.createElement('tr');
    const td = cell(emptyText, 'empty');
    td.colSpan = tbody.closest('table')?.querySelectorAll('th').length ?? 1;
    tr.append(td);
    tbody.append(tr);
    return;
  }
  for (const row of rows) {
    const tr = document.createElement('tr');
    for (const [text, className] of row) tr.append(cell(text, className));
    tbody.append(tr);
  }
}

/**
 * An API amount as nano-USD for a total; a malformed one counts 0, as it always has here.
 * @param {string} text
 */
function amountNano(text) {
  return usdToNano(text) ?? 0n;
}

/** @param {string} iso */
function age(iso) {
  const seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (seconds < 90) return seconds + ' s';
  if (seconds < 5400) return Math.round(seconds / 60) + ' min';
  if (seconds < 172800) return Math.round(seconds / 3600) + ' h';
  return Math.round(seconds / 86400) + ' d';
}

/**
 * @template T
 * @param {string} path
 * @returns {Promise<Page<T>>}
 */
async function api(path) {
  const response = await fetch(path, { headers: { authorization: 'Bearer ' + state.token, accept: 'application/json' } });
  if (response.status === 401) throw new AuthError('The admin token was refused.');
  if (!response.ok) {
    let message = response.status + ' ' + response.statusText;
    try { message = (await response.json()).error.message; } catch { /* not JSON: keep the status line */ }
    throw new Error(message);
  }
  return response.json();
}

/** @param {unknown} failure */
function messageOf(failure) {
  return failure instanceof Error ? failure.message : String(failure);
}

// ---- time range -------------------------------------------------------------------
/** @returns {Range} */
function rangeBuckets() {
  const now = new Date();
  if (state.range === 'hour') {
    const start = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate(), now.getUTCHours()) - 23 * 3600000;
    return { groupBy: 'hour', start: start, stepMs: 3600000, count: 24, label: 'last 24 hours' };
  }
  const start = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate()) - 29 * 86400000;
  return { groupBy: 'day', start: start, stepMs: 86400000, count: 30, label: 'last 30 days' };
}

/** @param {Range} range */
function sinceParam(range) {
  return 'since=' + encodeURIComponent(new Date(range.start).toISOString());
}

/**
 * A usage key for day/hour grouping as epoch ms: "2025-06-01" or an RFC 3339 time.
 * @param {string} key
 */
function keyTime(key) {
  const text = /^\d{4}-\d{2}-\d{2}$/.test(key) ? key + 'T00:00:00Z' : key;
  return Date.parse(text);
}

// ---- spend chart ------------------------------------------------------------------
async function loadSpend() {
  const range = rangeBuckets();
  /** @type {Page<UsageRow>} */
  const body = await api('/admin/usage?group_by=' + range.groupBy + '&' + sinceParam(range) + '&limit=1000');
  /** @type {number[]} */
  const xs = [];
  /** @type {number[]} */
  const charged = [];
  /** @type {number[]} */
  const upstream = [];
  for (let i = 0; i < range.count; i += 1) {
    xs.push((range.start + i * range.stepMs) / 1000);
    charged.push(0);
    upstream.push(0);
  }
  let chargedNano = 0n;
  let upstreamNano = 0n;
  let requests = 0;
  for (const row of body.data) {
    const index = Math.floor((keyTime(row.key) - range.start) / range.stepMs);
    chargedNano += amountNano(row.charged_usd);
    upstreamNano += amountNano(row.upstream_cost_usd);
    requests += row.requests;
    if (index < 0 || index >= range.count) continue;
    // Plotted as floats (display only); the totals above stay exact.
    charged[index] = (charged[index] ?? 0) + Number(row.charged_usd);
    upstream[index] = (upstream[index] ?? 0) + Number(row.upstream_cost_usd);
  }
  byId('spend-total').textContent = nanoToUsd(chargedNano);
  byId('spend-upstream').textContent = nanoToUsd(upstreamNano);
  byId('spend-margin').textContent = nanoToUsd(chargedNano - upstreamNano);
  byId('spend-requests').textContent = String(requests);
  byId('spend-range').textContent = range.label + ', by ' + range.groupBy + ' (UTC)';
  drawSpend([xs, charged, upstream]);
}

/** @param {HTMLElement} element */
function chartWidth(element) {
  return Math.max(240, Math.floor(element.getBoundingClientRect().width) - 8);
}

/**
 * @param {uPlot} u
 * @param {number[]} values
 */
function usdAxis(u, values) {
  return values.map(function (v) { return v === null ? '' : '$' + (v >= 1 ? v.toFixed(2) : v.toPrecision(2)); });
}

/** @param {uPlot.AlignedData} data */
function drawSpend(data) {
  const target = byId('chart');
  if (state.chart !== null) {
    state.chart.setData(data);
    return;
  }
  /** @type {(u: uPlot, v: number | null) => string} */
  const usdValue = function (u, v) { return v === null ? '-' : v.toFixed(9); };
  state.chart = new uPlot({
    width: chartWidth(target), height: 240, cursor: { drag: { x: false, y: false } },
    scales: { x: { time: true } },
    series: [
      {},
      { label: 'charged (USD)', stroke: '#2563eb', fill: 'rgba(37, 99, 235, 0.12)', width: 2, value: usdValue },
      { label: 'upstream cost (USD)', stroke: '#f59e0b', width: 2, dash: [6, 4], value: usdValue },
    ],
    axes: [{}, { values: usdAxis, size: 70 }],
  }, data, target);
}

// ---- live requests per second from /metrics (this replica; the admin token is accepted
// there when METRICS_TOKEN protects it) ----------------------------------------------------
/** @param {string} text */
function parseRequestCounters(text) {
  let total = 0;
  let chat = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith('metergate_http_requests_total{')) continue;
    const route = /route="([^"]*)"/.exec(line)?.[1];
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (!Number.isFinite(value) || route === undefined || route === '/metrics') continue;
    total += value;
    if (route.endsWith('/chat/completions')) chat += value;
  }
  return { total: total, chat: chat };
}

async function pollRps() {
  const response = await fetch('/metrics', { headers: { authorization: 'Bearer ' + state.token } });
  if (!response.ok) throw new Error('/metrics answered ' + response.status);
  const counts = parseRequestCounters(await response.text());
  const now = Date.now();
  const last = state.rps.last;
  state.rps.last = { at: now, total: counts.total, chat: counts.chat };
  // The first scrape only sets the baseline; a counter going down means a replica restart.
  if (last === null || counts.total < last.total) return;
  const seconds = (now - last.at) / 1000;
  const total = (counts.total - last.total) / seconds;
  const chat = Math.max(0, counts.chat - last.chat) / seconds;
  byId('rps-value').textContent = total.toFixed(1);
  byId('rps-chat').textContent = chat.toFixed(1);
  const series = state.rps;
  series.xs.push(now / 1000);
  series.total.push(total);
  series.chat.push(chat);
  if (series.xs.length > RPS_POINTS_MAX) { series.xs.shift(); series.total.shift(); series.chat.shift(); }
  drawRps([series.xs, series.total, series.chat]);
}

/** @param {uPlot.AlignedData} data */
function drawRps(data) {
  if (state.rpsChart !== null) {
    state.rpsChart.setData(data);
    return;
  }
  const target = byId('rps-chart');
  state.rpsChart = new uPlot({
    width: chartWidth(target), height: 110, legend: { show: false }, cursor: { show: false },
    scales: { x: { time: true }, y: { range: function (u, min, max) { return [0, Math.max(1, max * 1.2)]; } } },
    series: [{}, { label: 'all', stroke: '#64748b', width: 1.5 }, { label: 'chat', stroke: '#16a34a', width: 2 }],
    axes: [{ show: false }, { size: 40 }],
  }, data, target);
}

// ---- tables -----------------------------------------------------------------------
/**
 * @param {'user' | 'model'} groupBy
 * @param {string} tbodyId
 */
async function loadTop(groupBy, tbodyId) {
  const range = rangeBuckets();
  /** @type {Page<UsageRow>} */
  const body = await api('/admin/usage?group_by=' + groupBy + '&' + sinceParam(range) + '&limit=' + TOP_ROWS);
  fillTable(byId(tbodyId), body.data.map(function (row) {
    /** @type {Row} */
    const cells = [[row.key, 'key'], [row.requests, 'num'], [row.prompt_tokens + row.completion_tokens, 'num'], [row.charged_usd, 'num money']];
    return cells;
  }), 'no usage in this range');
}

async function loadLowBalances() {
  const input = inputById('low-threshold');
  const threshold = input.value.trim();
  if (!/^-?\d{1,12}(\.\d{1,9})?$/.test(threshold)) throw new Error('threshold must be a USD decimal such as 1.00');
  /** @type {Page<UserRow>} */
  const body = await api('/admin/users?sort=balance&order=asc&limit=' + TOP_ROWS + '&balance_below_usd=' + encodeURIComponent(threshold));
  fillTable(byId('low-balances'), body.data.map(function (user) {
    const className = user.balance_usd.startsWith('-') ? 'num money negative' : 'num money';
    /** @type {Row} */
    const cells = [[user.id, 'key'], [user.balance_usd, className], [user.held_usd, 'num money'], [user.available_usd, user.available_usd.startsWith('-') ? 'num money negative' : 'num money'], [user.spend_usd || user.total_usage_usd, 'num money']];
    return cells;
  }), 'no balance below ' + threshold);
}

async function loadUnsettled() {
  /** @type {Page<RequestRow>} */
  const body = await api('/admin/requests?state=unsettled&limit=' + UNSETTLED_PAGE);
  byId('unsettled-count').textContent = String(body.data.length) + (body.next_cursor ? '+' : '');
  byId('unsettled-card').classList.toggle('alert', body.data.length > 0);
  fillTable(byId('unsettled'), body.data.slice(0, UNSETTLED_SHOWN).map(function (request) {
    /** @type {Row} */
    const cells = [[request.id.slice(0, 8), 'mono'], [request.user_id, 'key'], [request.model], [request.state, 'state ' + request.state],
      [age(request.started_at), 'num'], [request.reason]];
    return cells;
  }), 'nothing unsettled');
}

async function loadLimits() {
  const user = inputById('limits-user').value.trim();
  if (user === '') {
    fillTable(byId('limits-spend'), [], 'no user chosen');
    return;
  }
  const response = await fetch('/admin/users/' + encodeURIComponent(user) + '/limits', { headers: { authorization: 'Bearer ' + state.token, accept: 'application/json' } });
  if (response.status === 401) throw new AuthError('The admin token was refused.');
  if (!response.ok) throw new Error(response.status === 404 ? 'no user ' + user : response.status + ' ' + response.statusText);
  /** @type {Limits} */
  const limits = await response.json();
  const rules = limits.models;
  byId('limits-summary').textContent = 'requests/min: ' + (limits.requests_per_minute ?? 'none') + ' (' + limits.requests_this_minute + ' this minute)'
    + ' · concurrent: ' + (limits.concurrent_calls ?? 'none') + ' (' + limits.open_calls + ' open)'
    + ' · models: ' + (rules.allow === null ? 'any' : rules.allow.join(', ')) + (rules.deny === null || rules.deny.length === 0 ? '' : ', not ' + rules.deny.join(', '));
  fillTable(byId('limits-spend'), limits.spend.map(function (limit) {
    /** @type {Row} */
    const cells = [[limit.period, 'key'], [limit.amount_usd, 'num money'], [limit.spent_usd, 'num money'], [limit.held_usd, 'num money'], [limit.resets_at ?? 'never']];
    return cells;
  }), 'no spend limit');
}

async function loadWebhooks() {
  /** @type {Page<WebhookRow>} */
  const body = await api('/admin/webhooks');
  fillTable(byId('webhooks'), body.data.map(function (hook) {
    /** @type {Row} */
    const cells = [[hook.id, 'mono'], [hook.url], [hook.events.join(', ')]];
    return cells;
  }), 'no webhooks');
}

// ---- refresh, errors, login ----------------------------------------------------------
/**
 * @param {string} panelId
 * @param {() => Promise<void>} load
 */
async function guarded(panelId, load) {
  const error = byId(panelId).querySelector('.panel-error');
  if (error === null) throw new Error('#' + panelId + ' has no .panel-error');
  try {
    await load();
    error.textContent = '';
  } catch (failure) {
    if (failure instanceof AuthError) { logout(failure.message); return; }
    error.textContent = messageOf(failure);
  }
}

async function refresh() {
  await Promise.all([
    guarded('spend-card', loadSpend),
    guarded('users-card', function () { return loadTop('user', 'top-users'); }),
    guarded('models-card', function () { return loadTop('model', 'top-models'); }),
    guarded('low-card', loadLowBalances),
    guarded('unsettled-card', loadUnsettled),
    guarded('limits-card', loadLimits),
    guarded('webhooks-card', loadWebhooks),
  ]);
  byId('updated').textContent = 'updated ' + new Date().toLocaleTimeString();
  document.body.dataset.loaded = 'true';
}

function start() {
  byId('login').hidden = true;
  byId('dashboard').hidden = false;
  refresh();
  guarded('rps-card', pollRps);
  state.timers.push(setInterval(refresh, REFRESH_MS));
  state.timers.push(setInterval(function () { guarded('rps-card', pollRps); }, RPS_POLL_MS));
}

/** @param {string} [message] */
function logout(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = null;
  for (const timer of state.timers) clearInterval(timer);
  state.timers = [];
  byId('dashboard').hidden = true;
  byId('login').hidden = false;
  byId('login-error').textContent = message || '';
  delete document.body.dataset.loaded;
}

/** @param {SubmitEvent} event */
async function login(event) {
  event.preventDefault();
  const token = inputById('token').value.trim();
  if (token === '') return;
  state.token = token;
  try {
    await api('/admin/usage?group_by=day&limit=1');
  } catch (failure) {
    state.token = null;
    byId('login-error').textContent = failure instanceof AuthError ? 'That token was refused.' : messageOf(failure);
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  inputById('token').value = '';
  start();
}

function init() {
  byId('login-form').addEventListener('submit', login);
  byId('logout').addEventListener('click', function () { logout('Logged out.'); });
  byId('refresh').addEventListener('click', refresh);
  byId('low-threshold').addEventListener('change', function () { guarded('low-card', loadLowBalances); });
  byId('limits-user').addEventListener('change', function () { guarded('limits-card', loadLimits); });
  byId('range').addEventListener('change', function (event) {
    const select = /** @type {HTMLSelectElement} */ (event.target);
    state.range = select.value === 'day' ? 'day' : 'hour';
    refresh();
  });
  window.addEventListener('resize', function () {
    if (state.chart !== null) state.chart.setSize({ width: chartWidth(byId('chart')), height: 240 });
    if (state.rpsChart !== null) state.rpsChart.setSize({ width: chartWidth(byId('rps-chart')), height: 110 });
  });
  state.token = sessionStorage.getItem(TOKEN_KEY);
  if (state.token) start();
  else logout('');
}

document.addEventListener('DOMContentLoaded', init);
