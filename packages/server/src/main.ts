#!/usr/bin/env node
/**
 * `npm start`: one replica. Without DATABASE_URL it starts (or joins) an embedded Postgres;
 * without OPENROUTER_API_KEY it starts the bundled OpenRouter simulator, and says so.
 */
import { randomBytes } from 'node:crypto';
import { EmbeddedPostgresError, startEmbeddedPostgres, type EmbeddedPostgresHandle } from '@metergate/db';
import { startSimulator } from '@metergate/simulator';
import { ConfigError, loadConfig, type Config } from './config.js';
import { demoWanted, provisionDemoUser } from './demo.js';
import { createLogger, type Logger } from './log.js';
import { startRuntime } from './runtime.js';

async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig();
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`metergate: ${error.message}\n`);
    process.exit(2);
  }
  const log = createLogger(config.logLevel, config.replicaId);
  const embedded = config.databaseUrl === null ? await startEmbedded(config, log) : null;
  const databaseUrl = config.databaseUrl ?? embedded!.url;
  const upstream = await resolveUpstream(config, log);
  const adminToken = config.adminToken ?? `mgadm-${randomBytes(24).toString('base64url')}`;
  const runtime = await startRuntime({ config: { ...config, openRouterBaseUrl: upstream.baseUrl }, log, databaseUrl, openRouterApiKey: upstream.apiKey, adminToken });
  log.info({ url: runtime.url, replica: config.replicaId }, 'metergate listening');
  await printBanner(config, runtime.url, adminToken, runtime.services.pools.write);

  // SIGTERM (orchestrators) and SIGINT (Ctrl-C): drain, settle, exit 0. A second signal while
  // draining is ignored: the deadline bounds the wait anyway.
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal, deadlineMs: config.shutdownDeadlineMs, inFlight: runtime.services.lifecycle.inFlight },
      'draining: no new calls; waiting for in-flight streams');
    try {
      await runtime.close(config.shutdownDeadlineMs);
      await upstream.close();
      await embedded?.stop();
    } catch (error) {
      log.error({ err: error }, 'shutdown failed');
      process.exit(1);
    }
    log.info('stopped');
    process.exit(0);
  };
  // This process owns its shutdown (and stops an embedded Postgres itself): its handlers are
  // the only ones.
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.removeAllListeners(signal);
    process.on(signal, () => void stop(signal));
  }
}

async function startEmbedded(config: Config, log: Logger): Promise<EmbeddedPostgresHandle> {
  const handle = await startEmbeddedPostgres({ dataDir: config.embeddedPgDir, port: config.embeddedPgPort, settings: { max_connections: '200' } });
  log.info({ dir: config.embeddedPgDir, port: config.embeddedPgPort, joined: !handle.owned },
    handle.owned ? 'DATABASE_URL unset: started embedded Postgres' : 'DATABASE_URL unset: joined the embedded Postgres already running here');
  return handle;
}

async function resolveUpstream(config: Config, log: Logger): Promise<{ baseUrl: string; apiKey: string; close(): Promise<void> }> {
  if (config.openRouterApiKey !== null) {
    return { baseUrl: config.openRouterBaseUrl, apiKey: config.openRouterApiKey, close: async () => undefined };
  }
  const apiKey = `sim-${randomBytes(12).toString('hex')}`;
  const simulator = await startSimulator({ host: '127.0.0.1', port: 0, apiKey });
  log.warn({ url: simulator.url }, '*** OPENROUTER_API_KEY unset: using the bundled OpenRouter SIMULATOR, not the real OpenRouter ***');
  return { baseUrl: simulator.url, apiKey, close: () => simulator.close() };
}

async function printBanner(config: Config, url: string, adminToken: string, pool: Parameters<typeof provisionDemoUser>[0]): Promise<void> {
  const lines = ['', `Metergate is running at ${url}`];
  if (config.openRouterApiKey === null) lines.push('  Upstream: the bundled OpenRouter SIMULATOR (set OPENROUTER_API_KEY for the real one)');
  if (config.adminToken === null) lines.push(`  Admin token (generated, set ADMIN_TOKEN to keep one): ${adminToken}`);
  if (demoWanted(config)) {
    const demo = await provisionDemoUser(pool);
    lines.push(`  Demo user "${demo.userId}" (balance ${demo.balanceUsd} USD), new key for this run. Try:`, '',
      `  curl -N ${url}/v1/chat/completions -H 'Authorization: Bearer ${demo.apiKey}' -H 'Content-Type: application/json' \\`,
      `    -d '{"model": "openai/gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": "Say hello"}]}'`, '');
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}

main().catch((error: unknown) => {
  // A launcher failure is a sentence saying what to do; a stack would only bury it.
  if (error instanceof EmbeddedPostgresError) {
    process.stderr.write(`metergate: ${error.message}\n`);
    process.exit(1);
  }
  process.stderr.write(`metergate: failed to start: ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
