import type { KeyWithRules as KeyOwner } from '@metergate/db';

interface Entry { owner: KeyOwner; expiresAtMs: number }

/**
 * Who owns an API key, remembered for ttlMs so the hot path skips one database round trip
 * per call (the benchmark's first saving). Only live keys are cached; a revocation through
 * this replica evicts at once, and through any other replica (or the CLI) takes effect here
 * within ttlMs. ttlMs = 0 turns it off.
 */
export class KeyCache {
  readonly #byHash = new Map<string, Entry>();

  constructor(private readonly ttlMs: number, private readonly entriesMax: number) {}

  get(hash: Buffer): KeyOwner | null {
    const key = hash.toString('base64');
    const entry = this.#byHash.get(key);
    if (entry === undefined) return null;
    if (entry.expiresAtMs <= Date.now()) {
      this.#byHash.delete(key);
      return null;
    }
    return entry.owner;
  }

  set(hash: Buffer, owner: KeyOwner): void {
    if (this.ttlMs === 0 || owner.revoked) return;
    // Bounded: the oldest insertion goes first (Map keeps insertion order).
    if (this.#byHash.size >= this.entriesMax) {
      const oldest = this.#byHash.keys().next();
      if (oldest.done !== true) this.#byHash.delete(oldest.value);
    }
    this.#byHash.set(hash.toString('base64'), { owner, expiresAtMs: Date.now() + this.ttlMs });
  }

  /** Forgets every key (their model rules changed). */
  clear(): void {
    this.#byHash.clear();
  }

  evictKey(keyId: string): void {
    for (const [hash, entry] of this.#byHash) {
      if (entry.owner.keyId === keyId) this.#byHash.delete(hash);
    }
  }
}
