import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort } from './cluster.js';
import { waitForPort } from './port.js';
import { REPO_ROOT } from './replica.js';

/** The deployment's nginx config: the tests run this very file, with places rewritten. */
export const NGINX_CONF = path.join(REPO_ROOT, 'docker/nginx.conf');

const INSTALL_HINT = 'nginx is not installed: run `bash scripts/ci-deps.sh` (installs Debian\'s nginx-light; `npm test` runs it first)';

/** Path of the nginx binary; throws (never skips) when it is missing. */
export function findNginx(): string {
  const dirs = [...(process.env.PATH ?? '').split(path.delimiter), '/usr/sbin', '/usr/local/sbin', '/sbin'];
  for (const dir of dirs) {
    const candidate = path.join(dir, 'nginx');
    if (dir !== '' && existsSync(candidate)) return candidate;
  }
  throw new Error(INSTALL_HINT);
}

export interface NginxPlaces {
  /** host:port of each replica, replacing the template's `server replicaN:8080 ...;` lines. */
  upstreams: string[];
  /** Replaces `listen 8080;` (e.g. "127.0.0.1:41234"); unchanged when absent. */
  listen?: string;
  /** Directory for logs and temp files; log paths unchanged when absent. */
  dir?: string;
}

const UPSTREAM_SERVER_RE = /^(\s*)server\s+replica\d+:\d+(\s[^;]*)?;\s*$/;

/**
 * Rewrites only the lines of docker/nginx.conf that name places (replica hosts, listen
 * address, log files), so the tests exercise the deployment's own proxy settings.
 */
export function renderNginxConfig(template: string, places: NginxPlaces): string {
  const lines = template.split('\n');
  const servers = lines.map((line) => UPSTREAM_SERVER_RE.exec(line));
  const first = servers.findIndex((match) => match !== null);
  if (first < 0) throw new Error('nginx template has no `server replicaN:PORT ...;` line');
  const [, indent = '', params = ''] = servers[first]!;
  const out: string[] = [];
  lines.forEach((line, index) => {
    if (index === first) {
      for (const upstream of places.upstreams) out.push(`${indent}server ${upstream}${params};`);
      return;
    }
    if (servers[index] !== null) return;
    out.push(rewritePlaceLine(line, places));
  });
  return out.join('\n');
}

function rewritePlaceLine(line: string, places: NginxPlaces): string {
  if (places.listen !== undefined && /^\s*listen\s+8080;\s*$/.test(line)) return line.replace(/listen\s+8080;/, `listen ${places.listen};`);
  if (places.dir === undefined) return line;
  const dir = places.dir;
  if (/^\s*error_log\s/.test(line)) return line.replace(/error_log\s+\S+/, `error_log ${path.join(dir, 'error.log')}`);
  if (/^\s*access_log\s/.test(line)) return line.replace(/access_log\s+\S+/, `access_log ${path.join(dir, 'access.log')}`);
  // Temp files go to the test's directory, not /var/lib/nginx (which may not exist).
  if (/^http\s*\{\s*$/.test(line)) {
    return `${line}\n  client_body_temp_path ${path.join(dir, 'client_body')};\n  proxy_temp_path ${path.join(dir, 'proxy')};`;
  }
  return line;
}

/** `nginx -t` on a config file; returns nginx's output, throws with it on failure. */
export function checkNginxConfig(configPath: string, dir: string): string {
  const result = spawnSync(findNginx(), ['-t', '-q', '-p', dir, '-c', configPath, '-e', path.join(dir, 'startup-error.log'),
    '-g', `pid ${path.join(dir, 'nginx-t.pid')};`], { encoding: 'utf8', timeout: 10_000 });
  const output = `${result.stdout ?? ''}${result.stderr ?? ''}`;
  if (result.status !== 0) throw new Error(`nginx -t failed (${result.status ?? result.signal}): ${output}`);
  return output;
}

export interface Nginx {
  readonly url: string;
  readonly port: number;
  readonly dir: string;
  readonly configPath: string;
  errorLog(): Promise<string>;
  accessLog(): Promise<string>;
  stop(): Promise<void>;
}

/** A real nginx (foreground, `daemon off`) from docker/nginx.conf in front of the given replica URLs. */
export async function startNginx(replicaUrls: string[], startTimeoutMs = 10_000): Promise<Nginx> {
  const binary = findNginx();
  const dir = await mkdtemp(path.join(tmpdir(), 'mg-nginx-'));
  // As root nginx's workers run as `nobody`: they must reach the temp dirs created under here.
  await chmod(dir, 0o755);
  const port = await freePort();
  const upstreams = replicaUrls.map((url) => new URL(url).host);
  const configPath = path.join(dir, 'nginx.conf');
  await writeFile(configPath, renderNginxConfig(await readFile(NGINX_CONF, 'utf8'), { upstreams, listen: `127.0.0.1:${port}`, dir }));
  checkNginxConfig(configPath, dir);
  const child = spawn(binary, ['-p', dir, '-c', configPath, '-e', path.join(dir, 'error.log'),
    '-g', `daemon off; pid ${path.join(dir, 'nginx.pid')};`], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => { output = (output + chunk.toString()).slice(-4_000); });
  child.stderr.on('data', (chunk: Buffer) => { output = (output + chunk.toString()).slice(-4_000); });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const errorLog = () => readFile(path.join(dir, 'error.log'), 'utf8').catch(() => '');
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    }
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await waitForPort(port, startTimeoutMs, () => child.exitCode !== null || child.signalCode !== null, 'nginx');
  } catch (error) {
    const log = await errorLog();
    await stop();
    throw new Error(`nginx did not start: ${(error as Error).message}\n${output}\n${log}`, { cause: error });
  }
  return {
    url: `http://127.0.0.1:${port}`, port, dir, configPath, errorLog,
    accessLog: () => readFile(path.join(dir, 'access.log'), 'utf8').catch(() => ''),
    stop,
  };
}
