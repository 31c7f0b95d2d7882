import { EsiProgram } from './program.js';
import { parseTag, resolveSrc } from './tag.js';

/**
 * The ESI parser (Varnish's VEP, cache_esi_parse.c): fed the template's body chunk by chunk as the fetch receives it,
 * it appends to an EsiProgram which stretches of the body are sent as they are and where includes go. It never looks
 * back at bytes already fed, holds at most one tag's text (bounded), and never throws: malformed markup is reported
 * (as Varnish's ESI_xmlerror records, counted as esi_errors / esi_warnings) and skipped.
 *
 * What it recognises, as Varnish does (case-sensitive):
 * - `<esi:include src="..." [onerror="continue"]/>`: an include. Without the final `/` a warning; no src, several
 *   src, whitespace in it, an end tag, or an include inside `<esi:remove>`: an error, the tag is dropped.
 * - `<esi:remove>...</esi:remove>`: the content is dropped (no nesting).
 * - `<esi:comment .../>`: dropped.
 * - `<!--esi ... -->`: the markers are dropped and the content processed.
 * - `<!-- ... -->` and `<![CDATA[ ... ]]>` pass verbatim and unprocessed; other tags pass verbatim.
 * - Any other `<esi:...>` is an error and dropped. A body whose first non-blank byte is not `<` is not processed.
 *
 * States: testxml -> text <-> tagstart -> (esitag | until | notmytag | tagerror) -> text; notxml absorbs the rest.
 * Byte offsets: `mark` starts the current run, verbatim (sent) or skipped; a run's bytes become a `bytes` op when
 * the run ends or, while it goes on, at the end of each chunk (but never past a `<` or `-->` still being decided).
 */

/** A parse problem, reported at a body offset. `note` is logged but not counted (Varnish's "No ESI processing"). */
export interface EsiDiagnostic {
  level: 'error' | 'warn' | 'note';
  offset: number;
  message: string;
}

type State = 'testxml' | 'notxml' | 'text' | 'tagstart' | 'until' | 'notmytag' | 'esitag' | 'tagerror';
type TagKind = 'esicomment' | 'emptycomment' | 'comment' | 'esiend' | 'esistart' | 'cdata' | 'notmytag';

/** What follows `<`, in Varnish's match order (vep_match_starttag). */
const START_TAGS: ReadonlyArray<readonly [string, TagKind]> = [
  ['!--esi', 'esicomment'],
  ['!---->', 'emptycomment'],
  ['!--', 'comment'],
  ['/esi:', 'esiend'],
  ['esi:', 'esistart'],
  ['![CDATA[', 'cdata'],
];

/** The longest ESI tag text kept; a longer one is an error and skipped to its `>`. */
export const MAX_ESI_TAG_BYTES = 16 * 1024;

/** The table entry `buf` (the characters after `<`) selects, how many of them it uses, or undefined: need more. */
function matchStart(buf: string): { kind: TagKind; used: number } | undefined {
  for (let k = 0; k < START_TAGS.length; k++) {
    const [pattern, kind] = START_TAGS[k] as readonly [string, TagKind];
    if (buf.startsWith(pattern)) return { kind, used: pattern.length };
    if (pattern.startsWith(buf)) return undefined;
  }
  return NOT_MY_TAG;
}

const NOT_MY_TAG = { kind: 'notmytag', used: 0 } as const;

/**
 * A copy of `s` that does not keep the chunk it was cut from alive (V8 slices share their parent string): a cached
 * template's program would otherwise hold every chunk's text beside the body.
 */
const own = (s: string): string => Buffer.from(s, 'latin1').toString('latin1');

export class EsiParser {
  readonly program = new EsiProgram();
  private state: State = 'testxml';
  /** Absolute offset of the next byte. */
  private pos = 0;
  private mark = 0;
  private verbatim = true;
  /** Ops before this index may have been seen by a delivery: never merged into. */
  private published = 0;
  private tagAt = 0;
  /** After `<`: the characters being matched (tagstart), or the ESI element's text (esitag). */
  private tagBuf = '';
  private endTag = false;
  private until = '';
  private untilMatched = 0;
  private remove = false;
  /** Inside `<!--esi`: watching for its `-->`. */
  private cmtArmed = false;
  private cmtMatched = 0;

  /** `baseUrl`: the URL relative includes resolve against (the backend request's). */
  constructor(
    private readonly baseUrl: string,
    private readonly report: (d: EsiDiagnostic) => void,
  ) {}

  /** Parses the next chunk of the body; the ops it completes are visible on return. */
  feed(chunk: Buffer): void {
    if (this.program.done || chunk.length === 0) return;
    this.run(chunk.toString('latin1'), this.pos);
    this.pos += chunk.length;
    const safe = this.state === 'tagstart' ? this.tagAt : this.pos - this.cmtMatched;
    this.emitUpTo(safe);
    // A verbatim run was emitted up to `safe`; a skipped one is skipped up to it: either way it is decided.
    this.program.settled = safe;
    this.published = this.program.ops.length;
  }

  /** The body ended: what is pending is flushed and the program is complete. */
  end(): void {
    if (this.program.done) return;
    if (this.state !== 'testxml' && this.state !== 'notxml' && this.state !== 'text') this.diag('error', this.pos, 'VEP ended inside a tag');
    this.emitUpTo(this.pos);
    this.program.settled = this.pos;
    this.program.done = true;
    this.published = this.program.ops.length;
  }

  private run(s: string, base: number): void {
    let i = 0;
    while (i < s.length) {
      switch (this.state) {
        case 'testxml':
          while (i < s.length && /[ \t\r\n]/.test(s[i] as string)) i++;
          if (i === s.length) break;
          if (s[i] === '<') {
            this.openTag(base + i);
            i++;
          } else {
            this.diag('note', base + i, "No ESI processing, first char not '<'. (See feature esi_disable_xml_check)");
            this.state = 'notxml';
          }
          break;
        case 'notxml':
          i = s.length;
          break;
        case 'text':
          i = this.text(s, base, i);
          break;
        case 'tagstart':
          i = this.tagStart(s, base, i);
          break;
        case 'until':
          i = this.untilEnd(s, i);
          break;
        case 'notmytag': {
          const j = s.indexOf('>', i);
          i = j < 0 ? s.length : j + 1;
          if (j >= 0) this.state = 'text';
          break;
        }
        case 'esitag':
        case 'tagerror':
          i = this.inEsiTag(s, base, i);
          break;
      }
    }
  }

  /** Text between tags: up to the next `<`, watching for the `-->` of an open `<!--esi`. */
  private text(s: string, base: number, i: number): number {
    if (!this.cmtArmed) {
      const j = s.indexOf('<', i);
      if (j < 0) return s.length;
      this.openTag(base + j);
      return j + 1;
    }
    for (; i < s.length; i++) {
      const c = s[i];
      if (c === '<') {
        this.openTag(base + i);
        return i + 1;
      }
      if (c === '-->'[this.cmtMatched]) {
        if (++this.cmtMatched === 3) {
          const end = base + i + 1;
          this.setVerbatim(end - 3, false);
          this.setVerbatim(end, !this.remove);
          this.cmtArmed = false;
          this.cmtMatched = 0;
          this.program.esiFound = true;
          return i + 1;
        }
      } else {
        this.cmtMatched = c === '-' ? Math.min(this.cmtMatched, 2) || 1 : 0;
      }
    }
    return i;
  }

  private openTag(at: number): void {
    this.tagAt = at;
    this.tagBuf = '';
    this.cmtMatched = 0;
    this.state = 'tagstart';
  }

  /** After `<`: one character at a time until the start-tag table decides; the characters it did not use are re-read. */
  private tagStart(s: string, base: number, i: number): number {
    this.tagBuf += s[i] as string;
    const m = matchStart(this.tagBuf);
    if (m === undefined) return i + 1;
    const left = this.tagBuf.slice(m.used);
    this.tagBuf = '';
    this.startTag(m.kind, base + i + 1 - left.length);
    if (left !== '') this.run(left, base + i + 1 - left.length);
    return i + 1;
  }

  private startTag(kind: TagKind, after: number): void {
    switch (kind) {
      case 'esicomment':
        if (this.remove) this.diag('error', this.tagAt, 'ESI 1.0 Nested <!--esi element in <esi:remove>');
        this.program.esiFound = true;
        this.setVerbatim(this.tagAt, false);
        this.setVerbatim(after, !this.remove);
        this.cmtArmed = true;
        this.state = 'text';
        return;
      case 'emptycomment':
        this.state = 'text';
        return;
      case 'comment':
      case 'cdata':
        this.until = kind === 'comment' ? '-->' : ']]>';
        this.untilMatched = 0;
        this.state = 'until';
        return;
      case 'esistart':
      case 'esiend':
        this.program.esiFound = true;
        this.endTag = kind === 'esiend';
        this.setVerbatim(this.tagAt, false);
        this.state = 'esitag';
        return;
      case 'notmytag':
        this.state = 'notmytag';
        return;
    }
  }

  /** A comment or CDATA section: verbatim up to its terminator. */
  private untilEnd(s: string, i: number): number {
    const u = this.until;
    for (; i < s.length; i++) {
      if (this.untilMatched === 0) {
        const j = s.indexOf(u[0] as string, i);
        if (j < 0) return s.length;
        i = j;
      }
      const c = s[i];
      if (c === u[this.untilMatched]) {
        if (++this.untilMatched === u.length) {
          this.state = 'text';
          return i + 1;
        }
      } else {
        this.untilMatched = c === u[0] ? Math.min(this.untilMatched, 2) || 1 : 0;
      }
    }
    return i;
  }

  /** Inside an ESI element (skipped): its text is kept, bounded, until `>`; then the element is acted on. */
  private inEsiTag(s: string, base: number, i: number): number {
    const j = s.indexOf('>', i);
    const stop = j < 0 ? s.length : j;
    if (this.state === 'esitag') {
      this.tagBuf += s.slice(i, stop);
      if (this.tagBuf.length > MAX_ESI_TAG_BYTES) {
        this.diag('error', this.tagAt, `ESI element longer than ${MAX_ESI_TAG_BYTES} bytes`);
        this.tagBuf = '';
        this.state = 'tagerror';
      }
    }
    if (j < 0) return s.length;
    if (this.state === 'esitag') this.element(this.tagBuf);
    this.tagBuf = '';
    this.setVerbatim(base + j + 1, !this.remove);
    this.state = 'text';
    return j + 1;
  }

  /** Acts on a complete ESI element (Varnish's vep_do_include / vep_do_remove / vep_do_comment). */
  private element(text: string): void {
    const tag = parseTag(text);
    if ('error' in tag) return this.diag('error', this.tagAt, tag.error);
    if (tag.name !== 'remove' && this.remove) return this.diag('error', this.tagAt, `ESI 1.0 <esi:${tag.name}> element nested in <esi:remove>`);
    if (tag.name !== 'remove' && this.endTag) return this.diag('error', this.tagAt, `ESI 1.0 </esi:${tag.name}> illegal end-tag`);
    switch (tag.name) {
      case 'comment':
        if (!tag.empty) this.diag('error', this.tagAt, "ESI 1.0 <esi:comment> needs final '/'");
        return;
      case 'remove':
        if (tag.empty) this.diag('error', this.tagAt, 'ESI 1.0 <esi:remove/> not legal');
        else if (this.remove && !this.endTag) this.diag('error', this.tagAt, 'ESI 1.0 <esi:remove> already open');
        else if (!this.remove && this.endTag) this.diag('error', this.tagAt, 'ESI 1.0 <esi:remove> not open');
        else this.remove = !this.endTag;
        return;
      case 'include':
        return this.include(tag.src, tag.onerror, tag.empty);
    }
  }

  private include(src: readonly string[], onerror: string | undefined, empty: boolean): void {
    if (src.length > 1) return this.diag('error', this.tagAt, 'ESI 1.0 <esi:include> has multiple src= attributes');
    if (!empty) this.diag('warn', this.tagAt, "ESI 1.0 <esi:include> lacks final '/'");
    const first = src[0];
    if (first === undefined) return this.diag('error', this.tagAt, 'ESI 1.0 <esi:include> lacks src attr');
    const target = resolveSrc(first, this.baseUrl);
    if ('error' in target) return this.diag(target.warn === true ? 'warn' : 'error', this.tagAt, target.error);
    this.program.ops.push({ kind: 'include', url: own(target.url), host: target.host === undefined ? undefined : own(target.host), onErrorContinue: onerror === 'continue' });
  }

  /** Switches the current run to verbatim or skipped at `at`, ending the previous run there. */
  private setVerbatim(at: number, verbatim: boolean): void {
    if (this.verbatim === verbatim) return;
    this.emitUpTo(at);
    this.mark = at;
    this.verbatim = verbatim;
  }

  /** The verbatim run's bytes up to `at` become an op (merged into the previous one while no delivery saw it). */
  private emitUpTo(at: number): void {
    if (!this.verbatim || at <= this.mark) return;
    const ops = this.program.ops;
    const last = ops[ops.length - 1];
    if (last !== undefined && last.kind === 'bytes' && last.end === this.mark && ops.length > this.published) last.end = at;
    else ops.push({ kind: 'bytes', start: this.mark, end: at });
    this.mark = at;
  }

  private diag(level: EsiDiagnostic['level'], offset: number, message: string): void {
    this.report({ level, offset, message });
  }
}
