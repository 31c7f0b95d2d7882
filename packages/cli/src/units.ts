/**
 * Sizes and durations as operators write them. Sizes: `1048576`, `512k`, `64KiB`, `256MB`, `1g` (k, m, g, t are
 * powers of 1024, as Varnish's -s malloc,256m). Durations: `90` (seconds), `500ms`, `10s`, `2m`, `1h`, `1d`, `1w`.
 */
const SIZE_RE = /^(\d+(?:\.\d+)?)\s*(?:([kmgt])(?:i?b)?|(b))?$/i;
const SIZE_MULT: Record<string, number> = { k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

export function parseSizeBytes(raw: string): number | undefined {
  const m = SIZE_RE.exec(raw.trim());
  if (m === null) return undefined;
  const unit = (m[2] ?? '').toLowerCase();
  const v = Math.floor(Number(m[1]) * (SIZE_MULT[unit] ?? 1));
  return Number.isSafeInteger(v) ? v : undefined;
}

const DURATION_RE = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w|y)?$/i;
const DURATION_SEC: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86_400, w: 604_800, y: 31_536_000 };

export function parseDurationSec(raw: string): number | undefined {
  const m = DURATION_RE.exec(raw.trim());
  if (m === null) return undefined;
  const v = Number(m[1]) * (DURATION_SEC[(m[2] ?? 's').toLowerCase()] ?? 1);
  return Number.isFinite(v) ? v : undefined;
}
