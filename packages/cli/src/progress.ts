/**
 * Progress on stderr for long commands (bench, replay): a counter with a percentage and an ETA, per step. On a
 * terminal it redraws one line in place; asked for with --progress when stderr is not a terminal (a CI log, a file)
 * it prints a line per tenth of the step instead; otherwise it says nothing. It never writes to stdout, so --json
 * output stays clean.
 */
export interface ProgressSink {
  write(s: string): unknown;
}

/** When to show progress: stderr is a terminal, or --progress asked for it; --no-progress never. */
export function progressWanted(flag: boolean | undefined, stream: { isTTY?: boolean } = process.stderr): boolean {
  return flag ?? stream.isTTY === true;
}

/** `95s`, `4m05s`, `1h02m`. */
export function formatEta(sec: number): string {
  if (!Number.isFinite(sec) || sec < 0) return '?';
  const s = Math.round(sec);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

export class Progress {
  private label = '';
  private unit = '';
  private total = 0;
  private done = 0;
  private startMs = 0;
  private lastDrawMs = 0;
  private lastTenth = -1;
  private drawn = false;

  constructor(
    private readonly out: ProgressSink,
    readonly enabled: boolean,
    /** Redraw in place (a terminal) rather than print lines. */
    private readonly tty: boolean,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** A line of its own (a step starting, a note), ending any counter drawn in place. */
  note(line: string): void {
    if (!this.enabled) return;
    this.endLine();
    this.out.write(`${line}\n`);
  }

  /** Starts counting a step of `total` units (`requests`, `s`). */
  begin(label: string, total: number, unit: string): void {
    this.endLine();
    this.label = label;
    this.total = Math.max(0, total);
    this.unit = unit;
    this.done = 0;
    this.startMs = this.now();
    this.lastDrawMs = 0;
    this.lastTenth = -1;
    this.draw(true);
  }

  tick(n = 1): void {
    this.done = Math.min(this.total, this.done + n);
    this.draw(this.done === this.total);
  }

  /** Ends the step's counter (its last state stays on screen). */
  end(): void {
    this.done = this.total;
    this.draw(true);
    this.endLine();
  }

  /** `label  12/40 requests  30%  ETA 14s` */
  line(): string {
    const pct = this.total === 0 ? 100 : Math.floor((this.done / this.total) * 100);
    const elapsedSec = (this.now() - this.startMs) / 1000;
    const eta = this.done === 0 ? '?' : formatEta((elapsedSec / this.done) * (this.total - this.done));
    return `${this.label}  ${this.done}/${this.total} ${this.unit}  ${String(pct).padStart(3)}%  ${this.done === this.total ? `done in ${formatEta(elapsedSec)}` : `ETA ${eta}`}`;
  }

  private draw(force: boolean): void {
    if (!this.enabled || this.label === '') return;
    const t = this.now();
    if (this.tty) {
      // At most 10 redraws a second: a fast replay must not spend its time drawing.
      if (!force && t - this.lastDrawMs < 100) return;
      this.lastDrawMs = t;
      this.out.write(`\r\x1b[K${this.line()}`);
      this.drawn = true;
      return;
    }
    const tenth = this.total === 0 ? 10 : Math.floor((this.done / this.total) * 10);
    if (tenth === this.lastTenth) return;
    this.lastTenth = tenth;
    this.out.write(`${this.line()}\n`);
  }

  private endLine(): void {
    if (this.tty && this.drawn) this.out.write('\n');
    this.drawn = false;
  }
}
