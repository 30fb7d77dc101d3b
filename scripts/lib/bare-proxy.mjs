#!/usr/bin/env node
// The benchmark's bare pass-through proxy: node:http in, undici out, no metering, no parsing.
// It is the floor any Node proxy pays (an extra hop, two HTTP codecs, a process), so
// Metergate's figures are compared with it rather than only with calling upstream directly.
// Usage: UPSTREAM_URL=http://127.0.0.1:N/api/v1 UPSTREAM_KEY=... node bare-proxy.mjs
// It maps /v1/<rest> to <UPSTREAM_URL>/<rest>, replaces Authorization with the upstream key
// (as Metergate does), prints one JSON line {"url"} once listening, exits on SIGTERM/SIGINT.
import http from 'node:http';
import { pipeline } from 'node:stream';
import { Pool } from 'undici';

const upstream = new URL(process.env.UPSTREAM_URL ?? '');
const upstreamKey = process.env.UPSTREAM_KEY ?? '';
// As many upstream connections as Metergate's default UPSTREAM_CONNECTIONS_MAX.
const pool = new Pool(upstream.origin, { connections: 256, keepAliveTimeout: 30_000 });
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'host',
  'proxy-authorization', 'proxy-connection']);

function forwardHeaders(headers) {
  const out = {};
  for (const [name, value] of Object.entries(headers)) if (!HOP_BY_HOP.has(name) && value !== undefined) out[name] = value;
  return out;
}

function fail(res, status, message) {
  if (res.headersSent) { res.destroy(); return; }
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ error: { message, type: 'bare_proxy_error', code: 'bare_proxy_error', param: null } }));
}

const server = http.createServer((req, res) => {
  if (!req.url?.startsWith('/v1/')) { fail(res, 404, 'not found'); return; }
  const headers = { ...forwardHeaders(req.headers), authorization: `Bearer ${upstreamKey}` };
  // The body is read whole before it is sent on, as any proxy that must look at it does (and
  // undici sends a buffer more cheaply than a stream).
  const chunks = [];
  req.on('data', (chunk) => chunks.push(chunk));
  req.on('error', () => res.destroy());
  req.on('end', () => forward(req, res, headers, chunks.length === 0 ? null : Buffer.concat(chunks)));
});

function forward(req, res, headers, body) {
  pool.request({ method: req.method, path: `${upstream.pathname}${req.url.slice(3)}`, headers, body })
    .then((response) => {
      res.writeHead(response.statusCode, forwardHeaders(response.headers));
      // pipeline destroys the upstream body if the client goes away, and vice versa.
      pipeline(response.body, res, () => undefined);
    }, (error) => fail(res, 502, `upstream: ${error.message}`));
}
server.keepAliveTimeout = 30_000;
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ url: `http://127.0.0.1:${server.address().port}` })}\n`);
});
const shutdown = () => { server.close(); server.closeAllConnections(); void pool.close().finally(() => process.exit(0)); };
process.once('SIGTERM', shutdown);
process.once('SIGINT', shutdown);
