export const DONE_LINES: readonly Buffer[] = [Buffer.from('data: [DONE]'), Buffer.from('data:[DONE]')];
const NEWLINE = 0x0a;
const CARRIAGE_RETURN = 0x0d;

/**
 * Passes SSE bytes through as they arrive, except the final `data: [DONE]` line and whatever
 * follows it, which it holds back so that [DONE] reaches the client only after the cost is
 * saved. Only bytes that could still begin a [DONE] line wait (at most 12 of them); every
 * other byte is forwarded in the same call it arrived in.
 */
export class DoneSplitter {
  #pending: Buffer = Buffer.alloc(0);
  #lineIsPlain = false;
  #held: Buffer | null = null;

  /** `terminalLines`: the lines from which on bytes are held (chat: `data: [DONE]`). */
  constructor(private readonly terminalLines: readonly Buffer[] = DONE_LINES) {}

  /** True once the [DONE] line has been seen (and held). */
  get sawDone(): boolean { return this.#held !== null; }

  /** Returns the bytes to forward now. */
  push(chunk: Buffer): Buffer {
    if (this.#held !== null) {
      this.#held = Buffer.concat([this.#held, chunk]);
      return Buffer.alloc(0);
    }
    const out: Buffer[] = [];
    let start = 0;
    while (start < chunk.length) {
      const newline = chunk.indexOf(NEWLINE, start);
      const end = newline < 0 ? chunk.length : newline + 1;
      const piece = chunk.subarray(start, end);
      if (this.#lineIsPlain) {
        out.push(piece);
      } else if (this.takeLinePiece(piece, newline >= 0, out)) {
        this.#held = Buffer.concat([this.#held!, chunk.subarray(end)]);
        break;
      }
      if (newline >= 0) this.#lineIsPlain = false;
      start = end;
    }
    return out.length === 1 ? out[0]! : Buffer.concat(out);
  }

  /** Everything not yet forwarded: the held [DONE] tail, or a trailing partial line. */
  drain(): Buffer {
    const rest = this.#held ?? this.#pending;
    this.#held = null;
    this.#pending = Buffer.alloc(0);
    return rest;
  }

  /** Returns true when the piece completed a [DONE] line (then held). */
  private takeLinePiece(piece: Buffer, complete: boolean, out: Buffer[]): boolean {
    const line = this.#pending.length === 0 ? piece : Buffer.concat([this.#pending, piece]);
    this.#pending = Buffer.alloc(0);
    if (complete && isDoneLine(line, this.terminalLines)) {
      this.#held = line;
      return true;
    }
    if (!complete && couldBeDoneLine(line, this.terminalLines)) {
      this.#pending = line;
      return false;
    }
    out.push(line);
    this.#lineIsPlain = !complete;
    return false;
  }
}

function isDoneLine(line: Buffer, terminalLines: readonly Buffer[]): boolean {
  let end = line.length;
  if (end > 0 && line[end - 1] === NEWLINE) end -= 1;
  if (end > 0 && line[end - 1] === CARRIAGE_RETURN) end -= 1;
  const body = line.subarray(0, end);
  return terminalLines.some((done) => done.equals(body));
}

function couldBeDoneLine(partial: Buffer, terminalLines: readonly Buffer[]): boolean {
  return terminalLines.some((done) => {
    if (partial.length <= done.length) return done.subarray(0, partial.length).equals(partial);
    return partial.length === done.length + 1 && partial[done.length] === CARRIAGE_RETURN &&
      done.equals(partial.subarray(0, done.length));
  });
}
