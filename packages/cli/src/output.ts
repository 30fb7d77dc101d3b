import { createWriteStream } from 'node:fs';
import { once } from 'node:events';
import { finished } from 'node:stream/promises';
import type { Writable } from 'node:stream';
import Table from 'cli-table3';

/** Human tables, plain (no colour codes) so they survive pipes and logs. */
export function renderTable(head: string[], rows: Array<Array<string | number | null>>, options: { alignRight?: number[] } = {}): string {
  const table = new Table({
    head,
    style: { head: [], border: [], compact: true },
    colAligns: head.map((_, index) => (options.alignRight?.includes(index) === true ? 'right' : 'left')),
  });
  for (const row of rows) table.push(row.map((cell) => (cell === null ? '' : String(cell))));
  return `${table.toString()}\n${rows.length === 0 ? '(none)\n' : ''}`;
}

/** Label/value pairs for a single record (users show, pricing show). */
export function renderRecord(record: Record<string, string | number | null>): string {
  const width = Math.max(...Object.keys(record).map((key) => key.length));
  return Object.entries(record).map(([key, value]) => `${key.padEnd(width)}  ${value === null ? '-' : String(value)}\n`).join('');
}

export function renderJson(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}

export function printTable(...args: Parameters<typeof renderTable>): void {
  process.stdout.write(renderTable(...args));
}

export function printRecord(record: Record<string, string | number | null>): void {
  process.stdout.write(renderRecord(record));
}

export function printJson(value: unknown): void {
  process.stdout.write(renderJson(value));
}

/** Notes for humans (next-page hints, "shown once" warnings) go to stderr, never into data. */
export function note(message: string): void {
  process.stderr.write(`${message}\n`);
}

/**
 * Where data goes: stdout, or a file (`--output`). `write` honours backpressure, so a large
 * export streams in constant memory; `close` waits until the file is on disk.
 */
export interface Sink {
  write(text: string): Promise<void>;
  close(): Promise<void>;
}

export function openSink(file: string | null): Sink {
  const stream: Writable = file === null ? process.stdout : createWriteStream(file, { flags: 'w' });
  return {
    async write(text) {
      if (!stream.write(text)) await Promise.race([once(stream, 'drain'), once(stream, 'error').then(([error]) => { throw error; })]);
    },
    async close() {
      if (stream === process.stdout) return;
      stream.end();
      await finished(stream);
    },
  };
}

/** Writes one rendered block to stdout or to `--output FILE`. */
export async function emit(file: string | null, text: string): Promise<void> {
  const sink = openSink(file);
  await sink.write(text);
  await sink.close();
}
