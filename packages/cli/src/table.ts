/**
 * The one table layout of the CLI (stats, replay, bench): a header row, columns aligned on the widest cell, two
 * spaces between columns, numbers right-aligned, and no trailing spaces. Width-aware: when the lines would be wider
 * than `width` (`COLUMNS`, or the terminal's columns when stdout is a terminal; no limit when it is a pipe or a file, which want
 * every character), the columns marked `shrink` are cut, widest first, each cell ending in `…`, down to `min`.
 */
export interface Column {
  header: string;
  align?: 'left' | 'right';
  /** May be cut to fit the width (a URL, a description). */
  shrink?: boolean;
  /** Never cut below this many characters (default 8). */
  min?: number;
  /** Never wider than this, whatever the width (a URL column in a long report). */
  max?: number;
}

const GAP = '  ';

/** `s` cut to `n` characters, the last one an ellipsis. */
export function cut(s: string, n: number): string {
  return s.length > n ? `${s.slice(0, Math.max(0, n - 1))}…` : s;
}

/** The width tables are fitted to: `COLUMNS` when set, else the terminal's when stdout is one, else none. */
export function terminalWidth(stream: NodeJS.WriteStream = process.stdout, env: NodeJS.ProcessEnv = process.env): number | undefined {
  const columns = Number(env['COLUMNS']);
  if (Number.isInteger(columns) && columns > 0) return columns;
  return stream.isTTY === true && stream.columns > 0 ? stream.columns : undefined;
}

function fitWidths(columns: readonly Column[], widths: number[], width: number | undefined): number[] {
  const w = widths.map((x, i) => Math.min(x, columns[i]?.max ?? Infinity));
  if (width === undefined) return w;
  const total = (): number => w.reduce((a, b) => a + b, 0) + GAP.length * (w.length - 1);
  while (total() > width) {
    let widest = -1;
    for (let i = 0; i < w.length; i++) {
      const c = columns[i] as Column;
      if (c.shrink === true && (w[i] as number) > (c.min ?? 8) && (widest < 0 || (w[i] as number) > (w[widest] as number))) widest = i;
    }
    if (widest < 0) break;
    w[widest] = Math.max(columns[widest]?.min ?? 8, (w[widest] as number) - (total() - width));
  }
  return w;
}

/** The table's lines: the header (unless `header: false`), then one line per row. Cells missing from a row are empty. */
export function formatTable(
  columns: readonly Column[],
  rows: ReadonlyArray<readonly string[]>,
  opts: { width?: number | undefined; header?: boolean } = {},
): string[] {
  const withHeader = opts.header !== false;
  const natural = columns.map((c, i) => Math.max(withHeader ? c.header.length : 0, ...rows.map((r) => (r[i] ?? '').length)));
  const w = fitWidths(columns, natural, opts.width);
  const line = (cells: readonly string[]): string =>
    columns
      .map((c, i) => {
        const text = cut(cells[i] ?? '', w[i] as number);
        return c.align === 'right' ? text.padStart(w[i] as number) : text.padEnd(w[i] as number);
      })
      .join(GAP)
      .trimEnd();
  return withHeader ? [line(columns.map((c) => c.header)), ...rows.map(line)] : rows.map(line);
}
