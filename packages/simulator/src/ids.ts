import { randomBytes } from 'node:crypto';

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
const RANDOM_CHARS = 20;

/** OpenRouter-shaped: `gen-<unix seconds>-<20 alphanumerics>`. */
export function newGenerationId(): string {
  const bytes = randomBytes(RANDOM_CHARS);
  let suffix = '';
  // The modulo bias is irrelevant: ids only need to be unique, not uniform.
  for (const byte of bytes) suffix += ALPHABET.charAt(byte % ALPHABET.length);
  return `gen-${Math.floor(Date.now() / 1000)}-${suffix}`;
}
