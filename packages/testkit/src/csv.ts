/**
 * A small RFC 4180 reader for export tests: quoted fields may hold commas, quotes (doubled)
 * and line breaks; outside quotes a row ends at CRLF (or a bare LF).
 */
export function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  const endRow = () => { row.push(field); rows.push(row); row = []; field = ''; };
  for (let i = 0; i < text.length; i += 1) {
    const ch = text[i]!;
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') { field += '"'; i += 1; } else if (ch === '"') quoted = false; else field += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') { row.push(field); field = ''; }
    else if (ch === '\r' && text[i + 1] === '\n') { endRow(); i += 1; }
    else if (ch === '\n') endRow();
    else field += ch;
  }
  if (field !== '' || row.length > 0) endRow();
  return rows;
}
