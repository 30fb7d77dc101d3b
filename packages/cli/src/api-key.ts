/**
 * Keys are minted by the proxy's own function (one format, one hash, one source of truth),
 * loaded only by the commands that create keys so every other command starts fast.
 */
export async function mintApiKey(): Promise<{ id: string; key: string; hash: Buffer }> {
  const { newApiKey } = await import('@metergate/server');
  return newApiKey();
}
