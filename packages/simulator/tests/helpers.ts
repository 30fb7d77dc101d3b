// Test helpers: requests against a simulator and a small streaming SSE reader.
import type { Simulator } from '../src/index.js';

export const API_KEY = 'sk-or-operator-test';

export function authHeaders(key = API_KEY): Record<string, string> {
  return { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' };
}

export function chat(sim: Simulator, body: unknown, init: RequestInit = {}): Promise<Response> {
  return fetch(`${sim.url}/chat/completions`, {
    method: 'POST',
    headers: authHeaders(),
    body: JSON.stringify(body),
    ...init,
  });
}

export function userMessages(content = 'Say hello in a few words, please.'): unknown[] {
  return [{ role: 'user', content }];
}

export type SseEvent = { kind: 'comment'; text: string } | { kind: 'data'; data: string };

/** One parsed data event's JSON (everything but [DONE]). */
export type Chunk = Record<string, any>;

export function jsonOf(event: SseEvent | undefined): Chunk {
  if (event?.kind !== 'data') throw new Error(`not a data event: ${JSON.stringify(event)}`);
  return JSON.parse(event.data) as Chunk;
}

export function contentOf(event: SseEvent): string | null {
  if (event.kind !== 'data' || event.data === '[DONE]') return null;
  const chunk = JSON.parse(event.data) as Chunk;
  const content = chunk['choices']?.[0]?.delta?.content;
  return typeof content === 'string' && content !== '' ? content : null;
}

/**
 * Reads an SSE body as a stream (UTF-8 decoded across reads), calling `onEvent` per event;
 * `onEvent` returning true stops reading. Resolves with the events, the raw network reads
 * and the error that ended the body, if any.
 */
export async function readSse(
  res: Response,
  onEvent: (event: SseEvent, events: SseEvent[]) => boolean | void = () => false,
): Promise<{ events: SseEvent[]; reads: Uint8Array[]; error: unknown }> {
  const events: SseEvent[] = [];
  const reads: Uint8Array[] = [];
  const decoder = new TextDecoder();
  const reader = res.body!.getReader();
  let buffered = '';
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return { events, reads, error: null };
      reads.push(value);
      buffered += decoder.decode(value, { stream: true });
      let end: number;
      while ((end = buffered.indexOf('\n\n')) >= 0) {
        const block = buffered.slice(0, end);
        buffered = buffered.slice(end + 2);
        const event: SseEvent = block.startsWith(':')
          ? { kind: 'comment', text: block.slice(1).trim() }
          : { kind: 'data', data: block.replace(/^data: ?/, '') };
        events.push(event);
        if (onEvent(event, events) === true) return { events, reads, error: null };
      }
    }
  } catch (error) {
    return { events, reads, error };
  }
}

/** Parses a USD decimal string ("0.0000025") into nano-USD without touching floats. */
export function usdStringToNano(usd: string): bigint {
  const [whole = '0', fraction = ''] = usd.split('.');
  return BigInt(whole) * 1_000_000_000n + BigInt((fraction + '000000000').slice(0, 9));
}

export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
