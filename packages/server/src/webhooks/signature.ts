import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * `Metergate-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`, as in
 * the Contract of issue 13. Receivers recompute it over the raw body and the t they were sent,
 * and should refuse a t far from their clock (replays).
 */
export function signatureHeader(secret: string, timestampS: number, body: string): string {
  return `t=${timestampS},v1=${createHmac('sha256', secret).update(`${timestampS}.${body}`, 'utf8').digest('hex')}`;
}

/** Verifies a header against a raw body (what a receiver does; used by the tests). */
export function verifySignature(secret: string, header: string, body: string): boolean {
  const match = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(header);
  if (match === null) return false;
  const expected = Buffer.from(signatureHeader(secret, Number(match[1]), body));
  const given = Buffer.from(header);
  return expected.length === given.length && timingSafeEqual(expected, given);
}
