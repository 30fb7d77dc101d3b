import { newApiKey } from '@metergate/server/api-keys';

/**
 * Keys are minted by the proxy's own function (one format, one hash, one source of truth),
 * through the server's `./api-keys` subpath: node:crypto only, not the HTTP stack.
 */
export function mintApiKey(): { id: string; key: string; hash: Buffer } {
  return newApiKey();
}
