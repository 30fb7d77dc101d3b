import type { IncomingMessage } from 'node:http';

/** Requests larger than this are refused (413) instead of buffered. */
export const MAX_BODY_BYTES = 16 * 1024 * 1024;

/** The whole request body, or null when it exceeds `maxBytes` (the rest is drained). */
export async function readBody(req: IncomingMessage, maxBytes = MAX_BODY_BYTES): Promise<Buffer | null> {
  const parts: Buffer[] = [];
  let size = 0;
  for await (const part of req) {
    const buffer = part as Buffer;
    size += buffer.length;
    if (size <= maxBytes) parts.push(buffer);
  }
  return size > maxBytes ? null : Buffer.concat(parts, size);
}

export type ParsedBody = { ok: true; value: unknown } | { ok: false };

/** An empty body parses as undefined (GET requests); broken JSON as { ok: false }. */
export function parseJson(body: Buffer): ParsedBody {
  if (body.length === 0) return { ok: true, value: undefined };
  try {
    return { ok: true, value: JSON.parse(body.toString('utf8')) as unknown };
  } catch {
    return { ok: false };
  }
}
