import { MetergateError } from '../errors.js';

/** Reads a whole upstream body, refusing to hold more than bytesMax in memory. */
export async function readBody(body: AsyncIterable<Buffer> & { destroy(): void }, bytesMax: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let length = 0;
  for await (const chunk of body) {
    length += chunk.length;
    if (length > bytesMax) {
      body.destroy();
      throw new MetergateError('upstream_bad_response', `the upstream response exceeded ${bytesMax} bytes`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, length);
}
