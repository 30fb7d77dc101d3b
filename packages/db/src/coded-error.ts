/**
 * The one base class of every error Metergate throws on purpose, as undici's `UndiciError`:
 * a stable `code` that callers, logs and tests match on. Messages are for people and may be
 * reworded; codes are a contract and are never renamed. The server maps the codes that reach
 * HTTP to statuses in its one table (packages/server/src/errors.ts); anything that is not a
 * CodedError is a programmer error and answers 500.
 */
export class CodedError<Code extends string = string> extends Error {
  constructor(readonly code: Code, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}
