import { formatNano, keys, ledger, users, type Queryable } from '@metergate/db';
import { newApiKey } from './auth/api-keys.js';

const DEMO_USER = 'demo';
const DEMO_GRANT_NANO = 5_000_000_000n; // 5 USD, once, when the demo user is first created

/** Development only: a demo user with credit and a fresh key, for the start-up curl. */
export async function provisionDemoUser(db: Queryable): Promise<{ userId: string; apiKey: string; balanceUsd: string }> {
  if ((await users.insertUser(db, DEMO_USER)) !== null) {
    await ledger.appendCredit(db, { userId: DEMO_USER, kind: 'grant', amountNano: DEMO_GRANT_NANO, note: 'demo grant' });
  }
  const key = newApiKey();
  await keys.insertKey(db, { id: key.id, userId: DEMO_USER, hash: key.hash });
  const user = await users.getUser(db, DEMO_USER);
  return { userId: DEMO_USER, apiKey: key.key, balanceUsd: formatNano(user?.balanceNano ?? 0n) };
}
