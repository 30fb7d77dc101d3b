import type { ServerResponse } from 'node:http';

export type Headers = Record<string, string>;

export function sendJson(res: ServerResponse, status: number, json: string, headers: Headers = {}): void {
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Content-Length': String(Buffer.byteLength(json)),
    ...headers,
  });
  res.end(json);
}

/** OpenRouter's error shape; before any output the HTTP status equals error.code. */
export function errorJson(code: number, message: string, metadata?: Record<string, unknown> | null): string {
  const error: Record<string, unknown> = { code, message };
  if (metadata) error['metadata'] = metadata;
  return JSON.stringify({ error });
}

export function sendError(
  res: ServerResponse,
  code: number,
  message: string,
  options: { metadata?: Record<string, unknown> | null; headers?: Headers } = {},
): void {
  sendJson(res, code, errorJson(code, message, options.metadata), options.headers);
}
