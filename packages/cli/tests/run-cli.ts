// Runs the compiled CLI as operators do: a child process with DATABASE_URL, bounded in time.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** The `metergate` command as installed (the bin shim that loads dist/src/main.js). */
export const CLI_PATH = fileURLToPath(new URL('../../bin/metergate.js', import.meta.url));
const CLI_TIMEOUT_MS = 30_000;

export interface CliResult { code: number | null; stdout: string; stderr: string }

export function runCli(args: string[], env: Record<string, string | undefined>): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    // Only what the CLI needs: no DATABASE_URL leaks in from the test runner's environment.
    const childEnv: Record<string, string> = { PATH: process.env.PATH ?? '', ...definedOnly(env) };
    const child = spawn(process.execPath, [CLI_PATH, ...args], { env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk; });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk; });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`metergate ${args.join(' ')} did not finish within ${CLI_TIMEOUT_MS} ms`));
    }, CLI_TIMEOUT_MS);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Runs a shell command line under `script` (util-linux), so stdout and stderr are a terminal. */
export function runInTerminal(commandLine: string, env: Record<string, string>): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('script', ['-qec', commandLine, '/dev/null'], { env: { PATH: process.env.PATH ?? '', TERM: 'xterm', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk; });
    child.stderr.resume();
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${commandLine} did not finish within ${CLI_TIMEOUT_MS} ms`));
    }, CLI_TIMEOUT_MS);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr: '' });
    });
  });
}

function definedOnly(env: Record<string, string | undefined>): Record<string, string> {
  return Object.fromEntries(Object.entries(env).filter((entry): entry is [string, string] => entry[1] !== undefined));
}


/** assert.match is QUnit 3 only; its typings are 2.x. Shows the text when it fails. */
export function like(assert: Assert, text: string, pattern: RegExp, message?: string): void {
  assert.ok(pattern.test(text), `${message ?? 'matches'} ${pattern}: ${JSON.stringify(text.slice(0, 2000))}`);
}

export { parseCsv } from '@metergate/testkit';
