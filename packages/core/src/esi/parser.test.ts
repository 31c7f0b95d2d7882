import { describe, expect, it } from 'vitest';
import { EsiParser, MAX_ESI_TAG_BYTES, type EsiDiagnostic } from './parser.js';

/** Parses `body` fed in chunks of `size` bytes; returns the assembled text with includes as [url|host|continue]. */
function assemble(body: string | Buffer, size = 1 << 20, baseUrl = '/dir/page?x=/y'): { out: string; diags: EsiDiagnostic[]; esiFound: boolean } {
  const diags: EsiDiagnostic[] = [];
  const p = new EsiParser(baseUrl, (d) => diags.push(d));
  const buf = typeof body === 'string' ? Buffer.from(body, 'latin1') : body;
  for (let i = 0; i < buf.length; i += size) p.feed(buf.subarray(i, i + size));
  p.end();
  let out = '';
  let last = 0;
  for (const op of p.program.ops) {
    if (op.kind === 'bytes') {
      // Ops are in order, never overlap, never empty.
      if (op.start < last || op.end <= op.start) throw new Error(`bad op ${op.start}-${op.end} after ${last}`);
      last = op.end;
      out += buf.subarray(op.start, op.end).toString('latin1');
    } else {
      out += `[${op.url}${op.host === undefined ? '' : `|${op.host}`}${op.onErrorContinue ? '|continue' : ''}]`;
    }
  }
  expect(p.program.done).toBe(true);
  return { out, diags, esiFound: p.program.esiFound };
}

const cases: Array<[string, string, string]> = [
  ['an include', '<p>a<esi:include src="/f"/>b</p>', '<p>a[/f]b</p>'],
  ['single quotes and onerror', "<p><esi:include src='/f' onerror=\"continue\"/></p>", '<p>[/f|continue]</p>'],
  ['attributes in any order, other attributes ignored', '<p><esi:include alt="/x" onerror="continue" src="/f" /></p>', '<p>[/f|continue]</p>'],
  ['a relative src against the directory of the URL (before ?)', '<p><esi:include src="frag?a=1"/></p>', '<p>[/dir/frag?a=1]</p>'],
  ['http:// sets the Host', '<p><esi:include src="http://other.example/f"/></p>', '<p>[/f|other.example]</p>'],
  ['entities in src are decoded', '<p><esi:include src="/f?a=1&amp;b=2"/></p>', '<p>[/f?a=1&b=2]</p>'],
  ['esi:remove drops its content', '<p>a<esi:remove>gone<b>x</b></esi:remove>b</p>', '<p>ab</p>'],
  ['<!--esi ... --> keeps its content, processed', '<p><!--esi x<esi:include src="/f"/>y -->z</p>', '<p> x[/f]y z</p>'],
  ['esi:comment is dropped', '<p>a<esi:comment text="hi"/>b</p>', '<p>ab</p>'],
  ['plain comments and CDATA pass verbatim and unprocessed', '<p><!-- <esi:include src="/no"/> --><![CDATA[<esi:include src="/no"/>]]></p>', '<p><!-- <esi:include src="/no"/> --><![CDATA[<esi:include src="/no"/>]]></p>'],
  ['other tags pass verbatim', '<a href="x"><esi:include src="/f"/></a>', '<a href="x">[/f]</a>'],
  ['leading blanks before the first <', '  \n<p><esi:include src="/f"/></p>', '  \n<p>[/f]</p>'],
  ['an empty comment', '<p><!----><esi:include src="/f"/></p>', '<p><!---->[/f]</p>'],
];

describe('ESI parser (Varnish VEP)', () => {
  it.each(cases)('%s', (_name, body, want) => {
    for (const size of [1, 2, 3, 7, 1 << 20]) expect(assemble(body, size).out).toBe(want);
  });

  it('a body that does not start with < is not processed (esiFound false), with a note', () => {
    const r = assemble('hello <esi:include src="/f"/>');
    expect(r.out).toBe('hello <esi:include src="/f"/>');
    expect(r.esiFound).toBe(false);
    expect(r.diags.map((d) => d.level)).toEqual(['note']);
  });

  it('a template without ESI markup is marked as such', () => {
    expect(assemble('<p>plain</p>').esiFound).toBe(false);
    expect(assemble('<p><esi:comment/></p>').esiFound).toBe(true);
  });

  const errors: Array<[string, string, string, 'error' | 'warn']> = [
    ['bogus element', '<p><esi:bogus src="/f"/></p>', 'ESI 1.0 <esi:bogus> element', 'error'],
    ['include without src', '<p><esi:include/></p>', 'ESI 1.0 <esi:include> lacks src attr', 'error'],
    ['two src', '<p><esi:include src="/a" src="/b"/></p>', 'ESI 1.0 <esi:include> has multiple src= attributes', 'error'],
    ['whitespace in src', '<p><esi:include src="/a b"/></p>', 'ESI 1.0 <esi:include> has whitespace in src= attribute', 'error'],
    ['https src', '<p><esi:include src="https://x/f"/></p>', 'ESI 1.0 <esi:include> with https:// ignored', 'warn'],
    ['http src without path', '<p><esi:include src="http://host"/></p>', 'ESI 1.0 <esi:include> invalid src= URL', 'error'],
    ['remove not open', '<p></esi:remove></p>', 'ESI 1.0 <esi:remove> not open', 'error'],
    ['remove already open', '<p><esi:remove><esi:remove></esi:remove></p>', 'ESI 1.0 <esi:remove> already open', 'error'],
    ['include in remove', '<p><esi:remove><esi:include src="/f"/></esi:remove></p>', 'ESI 1.0 <esi:include> element nested in <esi:remove>', 'error'],
    ['include end tag', '<p></esi:include></p>', 'ESI 1.0 </esi:include> illegal end-tag', 'error'],
    ['comment without final /', '<p><esi:comment></p>', "ESI 1.0 <esi:comment> needs final '/'", 'error'],
    ['unterminated attribute', '<p><esi:include src="/f/></p>', 'XML 1.0 Missing end attribute delimiter', 'error'],
    ['unterminated tag', '<p><esi:include src="/f"', 'VEP ended inside a tag', 'error'],
    ['unterminated comment', '<p><!-- never closed', 'VEP ended inside a tag', 'error'],
  ];
  it.each(errors)('%s: reported, and the tag dropped', (_name, body, message, level) => {
    const r = assemble(body);
    expect(r.diags).toContainEqual(expect.objectContaining({ level, message }));
    expect(r.out).not.toContain('esi:');
    expect(r.out).not.toContain('[');
  });

  it('an include without its final / is a warning, and still included (as Varnish)', () => {
    const r = assemble('<p><esi:include src="/f"></p>');
    expect(r.out).toBe('<p>[/f]</p>');
    expect(r.diags).toEqual([{ level: 'warn', offset: 3, message: "ESI 1.0 <esi:include> lacks final '/'" }]);
  });

  it('an element longer than the bound is an error and skipped to its >, memory bounded', () => {
    const huge = `<p>a<esi:include src="/${'x'.repeat(MAX_ESI_TAG_BYTES * 2)}"/>b</p>`;
    const r = assemble(huge, 4096);
    expect(r.out).toBe('<p>ab</p>');
    expect(r.diags[0]?.message).toMatch(/longer than/);
  });

  it('streams: the bytes before a tag being read are published, the tag start is held until decided', () => {
    const p = new EsiParser('/', () => undefined);
    p.feed(Buffer.from('<p>hello <es'));
    expect(p.program.ops).toEqual([{ kind: 'bytes', start: 0, end: 9 }]);
    p.feed(Buffer.from('i:include src="/f"/> world'));
    expect(p.program.ops.slice(1)).toEqual([
      { kind: 'include', url: '/f', host: undefined, onErrorContinue: false },
      { kind: 'bytes', start: 32, end: 38 },
    ]);
  });

  it('never throws on random bytes and keeps ops ordered (fuzz, 200 bodies)', () => {
    const alphabet = ['<', '>', '/', '"', "'", '=', ' ', '-', '!', '[', ']', 'esi:', 'include', 'remove', 'comment', 'src', '<!--esi', '-->', 'a', '\u00e9'];
    let seed = 12345;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    for (let k = 0; k < 200; k++) {
      let s = '<';
      const n = rand(200);
      for (let i = 0; i < n; i++) s += alphabet[rand(alphabet.length)];
      expect(() => assemble(s, 1 + rand(16))).not.toThrow();
      // Chunking never changes the result.
      expect(assemble(s, 1 + rand(16)).out).toBe(assemble(s).out);
    }
  });
});
