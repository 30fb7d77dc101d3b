import { formatNano, keys, ledger, users, type Queryable } from '@metergate/db';
import { newApiKey } from './auth/api-keys.js';
import type { Config } from './config.js';

const DEMO_USER = 'demo';
const DEMO_GRANT_NANO = 5_000_000_000n; // 5 USD, once, when the demo user is first created

/**
 * Only for the newcomer's `npm start` with nothing configured: development, the embedded
 * Postgres and the simulator. A key to a funded user, minted and printed on every start, has no
 * place in a real database, nor next to the operator's real OpenRouter key (its calls cost money).
 */
export function demoWanted(config: Pick<Config, 'nodeEnv' | 'databaseUrl' | 'openRouterApiKey'>): boolean {
  return config.nodeEnv === 'development' && config.databaseUrl === null && config.openRouterApiKey === null;
}

/** A demo user with credit and a fresh key, for the start-up curl (see demoWanted). */
export async function provisionDemoUser(db: Queryable): Promise<{ userId: string; apiKey: string; balanceUsd: string }> {
  if ((await users.insertUser(db, DEMO_USER)) !== null) {
    await ledger.appendCredit(db, { userId: DEMO_USER, kind: 'grant', amountNano: DEMO_GRANT_NANO, note: 'demo grant' });
  }
  const key = newApiKey();
  await keys.insertKey(db, { id: key.id, userId: DEMO_USER, hash: key.hash });
  const user = await users.getUser(db, DEMO_USER);
  return { userId: DEMO_USER, apiKey: key.key, balanceUsd: formatNano(user?.balanceNano ?? 0n) };
}
