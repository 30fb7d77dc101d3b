import { isObject } from './steering.js';

// Prompt tokens are estimated as ceil(chars / 4), the usual rule of thumb; "chars" are UTF-16
// code units (String.length), which is cheap and deterministic for tests to reproduce.
const CHARS_PER_TOKEN = 4;

function contentChars(content: unknown): number {
  if (typeof content === 'string') return content.length;
  if (!Array.isArray(content)) return 0;
  let chars = 0;
  for (const part of content) {
    if (isObject(part) && part['type'] === 'text' && typeof part['text'] === 'string') {
      chars += part['text'].length;
    }
  }
  return chars;
}

/** At least one token, like a real tokenizer on a chat template. */
export function countPromptTokens(messages: readonly unknown[]): number {
  let chars = 0;
  for (const message of messages) {
    if (isObject(message)) chars += contentChars(message['content']);
  }
  return Math.max(1, Math.ceil(chars / CHARS_PER_TOKEN));
}

/** Plain strings (a Responses `input`, a legacy `prompt`, embeddings' inputs), non-strings ignored. */
export function countTextTokens(texts: readonly unknown[]): number {
  let chars = 0;
  for (const text of texts) if (typeof text === 'string') chars += text.length;
  return Math.max(1, Math.ceil(chars / CHARS_PER_TOKEN));
}
