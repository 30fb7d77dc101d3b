#!/usr/bin/env node
// Standalone simulator: prints one JSON line {"url", "port"} once listening, so a parent
// process can read where it is; exits cleanly on SIGTERM/SIGINT.
import { parseArgs } from 'node:util';
import { startSimulator } from './simulator.js';
import type { SimulatorOptions } from './types.js';

const USAGE = 'usage: main.js [--port N] [--host H] [--api-key KEY] [--lookup-404-ms N] [--defaults JSON]';

function integer(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed < 0) throw new Error(`--${name} must be a non-negative integer`);
  return parsed;
}

function readOptions(argv: string[]): SimulatorOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      port: { type: 'string' },
      host: { type: 'string' },
      'api-key': { type: 'string' },
      'lookup-404-ms': { type: 'string' },
      defaults: { type: 'string' },
    },
    strict: true,
  });
  const options: SimulatorOptions = {};
  const port = integer(values.port, 'port');
  const lookup404Ms = integer(values['lookup-404-ms'], 'lookup-404-ms');
  if (port !== undefined) options.port = port;
  if (values.host !== undefined) options.host = values.host;
  if (values['api-key'] !== undefined) options.apiKey = values['api-key'];
  if (lookup404Ms !== undefined) options.lookup404Ms = lookup404Ms;
  if (values.defaults !== undefined) options.defaults = JSON.parse(values.defaults) as SimulatorOptions['defaults'];
  return options;
}

async function main(): Promise<void> {
  let options: SimulatorOptions;
  try {
    options = readOptions(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n${USAGE}\n`);
    process.exit(2);
  }
  const simulator = await startSimulator(options);
  process.stdout.write(`${JSON.stringify({ url: simulator.url, port: simulator.port })}\n`);
  const shutdown = (): void => {
    simulator.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGTERM', shutdown);
  process.once('SIGINT', shutdown);
}

main().catch((error: unknown) => {
  process.stderr.write(`simulator: ${error instanceof Error ? error.stack ?? error.message : String(error)}\n`);
  process.exit(1);
});
