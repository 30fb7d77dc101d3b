import type { ServerResponse } from 'node:http';
import type { Books } from './books.js';
import { sendError, sendJson } from './respond.js';
import type { GenerationRecord, RequestLogEntry } from './types.js';

// Control routes under /__sim let a test or benchmark in another process read and reset the
// books. They skip authentication and the request log: they are not part of the protocol.

export interface ControlDeps {
  books: Books;
  log: RequestLogEntry[];
}

/** JSON cannot carry bigint: costNano travels as a decimal string. */
export function recordJson(record: GenerationRecord): Record<string, unknown> {
  const upstreamInferenceNano = record.upstreamInferenceNano === null ? null : record.upstreamInferenceNano.toString();
  return { ...record, costNano: record.costNano.toString(), upstreamInferenceNano };
}

export function handleControl(deps: ControlDeps, method: string, path: string, res: ServerResponse): void {
  if (method === 'GET' && path === '/__sim/generations') {
    sendJson(res, 200, JSON.stringify({ data: deps.books.records().map(recordJson) }));
  } else if (method === 'GET' && path === '/__sim/requests') {
    sendJson(res, 200, JSON.stringify({ data: deps.log }));
  } else if (method === 'POST' && path === '/__sim/reset') {
    deps.books.reset();
    deps.log.length = 0;
    sendJson(res, 200, JSON.stringify({ ok: true }));
  } else {
    sendError(res, 404, `No control route ${method} ${path}`);
  }
}
