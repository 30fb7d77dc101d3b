import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import {
  chatCall, createTestDatabase, REPO_ROOT, startSimulator, type Simulator, type TestDatabase,
} from '@metergate/testkit';

// No Docker engine runs here, so the deployment files are checked as far as tools allow:
// compose and provisioning YAML through a real YAML parser (python3-yaml, from
// scripts/ci-deps.sh), the dashboard's PromQL against the metric names a live replica exports,
// the Dockerfile's instructions, and its runtime stage rehearsed outside Docker (same file
// layout, `npm ci --omit=dev` from the npm cache, NODE_ENV=production, its HEALTHCHECK).
const DOCKER = path.join(REPO_ROOT, 'docker');

function parseYaml(file: string): any {
  const script = 'import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))';
  const result = spawnSync('python3', ['-c', script, file], { encoding: 'utf8', timeout: 10_000 });
  if (result.error !== undefined || result.status !== 0) {
    throw new Error(`cannot parse ${file} with python3-yaml (run \`bash scripts/ci-deps.sh\` to install it): ${result.error?.message ?? result.stderr}`);
  }
  return JSON.parse(result.stdout);
}

/** Instructions of a Dockerfile with continuation lines joined, comments dropped. */
function dockerInstructions(text: string): Array<{ op: string; args: string }> {
  const joined = text.split('\n').filter((line) => !/^\s*#/.test(line)).join('\n').replace(/\\\n/g, ' ');
  return joined.split('\n').map((line) => line.trim()).filter((line) => line !== '')
    .map((line) => { const [op = '', ...rest] = line.split(/\s+/); return { op: op.toUpperCase(), args: rest.join(' ') }; });
}

/** The HEALTHCHECK's exec-form command (a JSON array after CMD). */
function healthcheckArgv(instructions: Array<{ op: string; args: string }>): string[] {
  const check = instructions.find((i) => i.op === 'HEALTHCHECK');
  const json = check?.args.slice(check.args.indexOf('CMD ') + 4) ?? '[]';
  return JSON.parse(json) as string[];
}

interface ProductionReplica { child: ChildProcess; url: string; stop(): Promise<void> }

/** Runs the image's CMD from an app dir laid out as the runtime stage lays it out. */
async function startProductionReplica(appDir: string, env: Record<string, string>): Promise<ProductionReplica> {
  const child = spawn(process.execPath, ['packages/server/dist/src/main.js'], {
    cwd: appDir, stdio: ['ignore', 'pipe', 'pipe'],
    env: { PATH: process.env.PATH ?? '', NODE_ENV: 'production', HOST: '127.0.0.1', PORT: '0', LOG_LEVEL: 'info', ...env },
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const lines: string[] = [];
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`production replica did not start: ${lines.slice(-5).join('\n')}`)), 20_000);
    void exited.then(() => { clearTimeout(timer); reject(new Error(`production replica exited: ${lines.slice(-5).join('\n')}`)); });
    for (const stream of [child.stdout!, child.stderr!]) {
      createInterface({ input: stream }).on('line', (line) => {
        lines.push(line);
        try {
          const entry = JSON.parse(line) as { msg?: string; url?: string };
          if (entry.msg === 'metergate listening' && typeof entry.url === 'string') { clearTimeout(timer); resolve(entry.url); }
        } catch { /* not a log line */ }
      });
    }
  });
  return {
    child, url,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

QUnit.module('deployment files (docker/)', (hooks) => {
  let compose: any;
  hooks.before(() => { compose = parseYaml(path.join(DOCKER, 'compose.yml')); });

  QUnit.test('compose.yml: Postgres 17 with a healthcheck, three replicas of one image, nginx, Prometheus, Grafana', async (assert) => {
    const services = compose.services as Record<string, any>;
    assert.true(String(services.postgres?.image).startsWith('postgres:17'), 'postgres:17');
    assert.true(JSON.stringify(services.postgres?.healthcheck?.test ?? '').includes('pg_isready'), 'postgres healthcheck');
    const replicas = Object.keys(services).filter((name) => /^replica\d+$/.test(name)).sort();
    assert.deepEqual(replicas, ['replica1', 'replica2', 'replica3']);
    const ids = new Set<string>();
    for (const name of replicas) {
      const service = services[name];
      const env = service.environment as Record<string, string>;
      assert.deepEqual(service.build, { context: '..', dockerfile: 'docker/Dockerfile' }, `${name}: built from docker/Dockerfile`);
      assert.strictEqual(service.image, services.replica1.image, `${name}: the same image`);
      assert.strictEqual(env.NODE_ENV, 'production');
      assert.true(/^postgres:\/\/[^@]+@postgres:5432\/\w+$/.test(env.DATABASE_URL ?? ''), `${name}: DATABASE_URL to the postgres service`);
      for (const secret of ['ADMIN_TOKEN', 'OPENROUTER_API_KEY']) assert.true(/^\$\{\w+:\?[^}]+\}$/.test(env[secret] ?? ''), `${name}: ${secret} required from the environment`);
      ids.add(env.REPLICA_ID ?? '');
      assert.strictEqual(service.depends_on?.postgres?.condition, 'service_healthy', `${name}: waits for a healthy Postgres`);
      assert.true(JSON.stringify(service.healthcheck.test).includes('/readyz'), `${name}: healthcheck on /readyz`);
    }
    assert.strictEqual(ids.size, 3, 'distinct REPLICA_IDs');

    const nginxConf = await readFile(path.join(DOCKER, 'nginx.conf'), 'utf8');
    const upstreams = [...nginxConf.matchAll(/^\s*server\s+([\w.-]+):(\d+)/gm)].map((m) => `${m[1]}:${m[2]}`);
    assert.deepEqual(upstreams, replicas.map((r) => `${r}:8080`), 'nginx balances over exactly the replica services');
    assert.true((services.nginx.volumes as string[]).includes('./nginx.conf:/etc/nginx/nginx.conf:ro'), 'nginx runs docker/nginx.conf');
    assert.deepEqual(Object.keys(services.nginx.depends_on).sort(), replicas, 'nginx starts after the replicas');

    const prometheus = parseYaml(path.join(DOCKER, 'prometheus.yml'));
    const targets = (prometheus.scrape_configs as any[]).flatMap((job) => job.static_configs.flatMap((c: any) => c.targets as string[]));
    assert.deepEqual(targets.sort(), replicas.map((r) => `${r}:8080`), 'Prometheus scrapes every replica directly');
    assert.true((services.prometheus.volumes as string[]).includes('./prometheus.yml:/etc/prometheus/prometheus.yml:ro'));

    const datasource = parseYaml(path.join(DOCKER, 'grafana/provisioning/datasources/prometheus.yml')).datasources[0];
    assert.strictEqual(datasource.url, 'http://prometheus:9090', 'Grafana reads the compose Prometheus');
    const provider = parseYaml(path.join(DOCKER, 'grafana/provisioning/dashboards/metergate.yml')).providers[0];
    assert.true((services.grafana.volumes as string[]).includes(`./grafana/dashboards:${provider.options.path}:ro`), 'the provisioned folder is the repo\'s dashboards folder');
    const dashboard = JSON.parse(await readFile(path.join(DOCKER, 'grafana/dashboards/metergate.json'), 'utf8'));
    const uids = new Set((dashboard.panels as any[]).map((p) => p.datasource?.uid));
    assert.deepEqual([...uids], [datasource.uid], 'every panel uses the provisioned datasource');

    for (const [name, service] of Object.entries(services)) {
      for (const volume of (service.volumes ?? []) as string[]) {
        if (!volume.startsWith('.')) continue;
        assert.true(existsSync(path.join(DOCKER, volume.split(':')[0]!)), `${name}: bind mount ${volume} exists`);
      }
    }
    const example = await readFile(path.join(DOCKER, '.env.example'), 'utf8');
    const required = new Set([...JSON.stringify(compose).matchAll(/\$\{(\w+):\?/g)].map((m) => m[1]!));
    for (const name of required) assert.true(new RegExp(`^${name}=`, 'm').test(example), `.env.example sets ${name}`);
  });

  QUnit.test('Dockerfile: multi-stage, production deps only, non-root, healthcheck, port, command', async (assert) => {
    const steps = dockerInstructions(await readFile(path.join(DOCKER, 'Dockerfile'), 'utf8'));
    const froms = steps.filter((s) => s.op === 'FROM');
    assert.true(froms.length >= 2 && / AS build$/i.test(froms[0]!.args), 'a build stage, then a runtime stage');
    const lastFrom = steps.lastIndexOf(froms.at(-1)!);
    const [build, runtime] = [steps.slice(0, lastFrom), steps.slice(lastFrom)];
    const runs = (part: typeof steps) => part.filter((s) => s.op === 'RUN').map((s) => s.args).join('\n');
    assert.true(/npm ci\b/.test(runs(build)) && /tsc -b/.test(runs(build)), 'build: npm ci + tsc -b');
    assert.true(/npm ci [^\n]*--omit=dev/.test(runs(runtime)), 'runtime: npm ci --omit=dev');
    assert.false(/npm ci(?![^\n]*--omit=dev)/.test(runs(runtime)), 'runtime: no full install');
    assert.true(runtime.some((s) => s.op === 'COPY' && s.args.includes('--from=build')), 'runtime copies the build output');
    const user = runtime.filter((s) => s.op === 'USER').at(-1)?.args;
    assert.true(user !== undefined && !/^(root|0)(:|$)/.test(user), `runs as ${user}, not root`);
    assert.true(runtime.some((s) => s.op === 'ENV' && /NODE_ENV=production/.test(s.args)), 'NODE_ENV=production');
    assert.true(runtime.some((s) => s.op === 'EXPOSE' && s.args === '8080'), 'EXPOSE 8080');
    const cmd = runtime.filter((s) => s.op === 'CMD').at(-1);
    assert.deepEqual(JSON.parse(cmd?.args ?? '[]'), ['node', 'packages/server/dist/src/main.js'], 'CMD starts the server');
    const check = healthcheckArgv(runtime);
    assert.strictEqual(check[0], 'node', 'healthcheck uses node (no curl in slim images)');
    assert.true(check.join(' ').includes('/healthz'), 'healthcheck hits /healthz');
    const ignore = await readFile(path.join(DOCKER, 'Dockerfile.dockerignore'), 'utf8');
    for (const pattern of ['**/node_modules', '**/dist']) assert.true(ignore.split('\n').includes(pattern), `context excludes ${pattern}`);
  });

  QUnit.module('runtime stage rehearsed outside Docker', (inner) => {
    let appDir: string;
    let db: TestDatabase;
    let sim: Simulator;
    let replica: ProductionReplica | undefined;
    const simKey = `sim-${randomBytes(8).toString('hex')}`;
    const adminToken = `admin-${randomBytes(12).toString('hex')}`;
    inner.before(async () => {
      appDir = await mkdtemp(path.join(tmpdir(), 'mg-image-'));
      db = await createTestDatabase();
      sim = await startSimulator({ apiKey: simKey, lookup404Ms: 100 });
    });
    inner.after(async () => {
      await replica?.stop();
      await sim?.close();
      await db?.drop();
      await rm(appDir, { recursive: true, force: true });
    });

    QUnit.test('the image layout with production deps only starts with NODE_ENV=production, meters a call, passes its HEALTHCHECK', async (assert) => {
      const steps = dockerInstructions(await readFile(path.join(DOCKER, 'Dockerfile'), 'utf8'));
      // The build stage's own script that assembles /out, run here with /out → a temp dir.
      const assemble = steps.find((s) => s.op === 'RUN' && s.args.includes('/out/packages'))!.args.replaceAll('/out', appDir);
      const assembled = spawnSync('sh', ['-c', assemble], { cwd: REPO_ROOT, encoding: 'utf8', timeout: 30_000 });
      assert.strictEqual(assembled.status, 0, `assemble: ${assembled.stderr}`);
      // From the local npm cache (filled by `npm ci`): no registry traffic from the test.
      const install = spawnSync('npm', ['ci', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund', '--offline'], {
        cwd: appDir, encoding: 'utf8', timeout: 90_000, env: { ...process.env, npm_config_loglevel: 'error' },
      });
      assert.strictEqual(install.status, 0, `npm ci --omit=dev: ${install.stderr}`);
      for (const dev of ['typescript', 'qunit', 'pg-mem']) assert.false(existsSync(path.join(appDir, 'node_modules', dev)), `no dev dependency ${dev}`);

      replica = await startProductionReplica(appDir, {
        DATABASE_URL: db.url, OPENROUTER_BASE_URL: sim.url, OPENROUTER_API_KEY: simKey, ADMIN_TOKEN: adminToken, REPLICA_ID: 'image-rehearsal',
      });
      const port = new URL(replica.url).port;
      const check = healthcheckArgv(dockerInstructions(await readFile(path.join(DOCKER, 'Dockerfile'), 'utf8')));
      const healthy = spawnSync(process.execPath, check.slice(1), { env: { PORT: port }, timeout: 10_000 });
      assert.strictEqual(healthy.status, 0, 'HEALTHCHECK passes against the running replica');
      const unhealthy = spawnSync(process.execPath, check.slice(1), { env: { PORT: '1' }, timeout: 10_000 });
      assert.strictEqual(unhealthy.status, 1, 'and fails when nothing answers');

      const created = await fetch(`${replica.url}/admin/users`, {
        method: 'POST', headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' }, body: JSON.stringify({ id: 'prod' }),
      });
      assert.strictEqual(created.status, 201);
      const { api_key: key } = await created.json() as { api_key: string };
      await fetch(`${replica.url}/admin/users/prod/credits`, {
        method: 'POST', headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' }, body: JSON.stringify({ amount_usd: '1.00' }),
      });
      const call = await chatCall(replica.url, key, { model: 'openai/gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'hi' }] });
      assert.strictEqual(call.status, 200, call.body);

      const metrics = await (await fetch(`${replica.url}/metrics`)).text();
      const exported = new Set<string>();
      for (const [, name, type] of metrics.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
        exported.add(name!);
        if (type === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) exported.add(`${name}${suffix}`);
      }
      const dashboard = JSON.parse(await readFile(path.join(DOCKER, 'grafana/dashboards/metergate.json'), 'utf8'));
      const exprs = (dashboard.panels as any[]).flatMap((p) => (p.targets as any[]).map((t) => ({ panel: p.title as string, expr: t.expr as string })));
      for (const { panel, expr } of exprs) {
        const names = expr.match(/\bmetergate_[a-z0-9_]+/g) ?? [];
        assert.true(names.length > 0 && names.every((name) => exported.has(name)), `${panel}: ${names.filter((n) => !exported.has(n)).join(', ') || 'metrics exist'}`);
        assert.strictEqual(expr.split('(').length, expr.split(')').length, `${panel}: balanced parentheses`);
      }
      const all = exprs.map((e) => e.expr).join('\n');
      for (const needed of ['metergate_http_requests_total', 'metergate_lock_wait_seconds_bucket', 'metergate_barrier_queue_depth',
        'metergate_pool_clients_pinned', 'metergate_unsettled_requests', 'metergate_upstream_ttfb_seconds_bucket']) {
        assert.true(all.includes(needed), `a panel shows ${needed}`);
      }
      assert.true(/rate\(metergate_cost_recorded_nano_total\[[^\]]+\]\)\)\s*\*\s*60\s*\/\s*1e9/.test(all), 'cost per minute in USD');
      assert.true(/status=~"5\.\."/.test(all), 'an errors panel');
    });
  });
});
