import { Command, Flags } from '@oclif/core';
import { formatNdjson, formatVarnishlog, parseNdjsonGroup, type TxView } from '@sluice/core';
import { adminFetch, adminTarget } from '../admin-client.js';
import { CliError } from '../errors.js';
import { formatRaw, matchesQuery, parseLogQuery, QuerySyntaxError, type LogQuery } from '../log-query.js';
import { adminFlags } from './stats.js';

export default class LogCommand extends Command {
  static override summary = "Tail a running proxy's transaction log, as varnishlog does.";
  static override description =
    'Reads GET /log from the admin API and prints each transaction group as it completes, in the layout varnishlog prints (or NDJSON with --ndjson). The proxy builds log records only while someone is reading them (or --log is on), so tailing costs nothing when no one does. --url and --status filter on the proxy side; -q takes a varnishlog query (vsl-query(7): Tag, Tag:Header, {level}Tag, Tag[field], vxid; == != < <= > >= on numbers, eq ne on strings, ~ !~ regular expressions; and, or, not, parentheses), evaluated here, as varnishlog evaluates it in its own process: a group is printed when any of its records satisfies the query (per transaction with -g vxid and -g raw).';
  static override examples = [
    '<%= config.bin %> log --token s3cret-token',
    '<%= config.bin %> log -g vxid',
    '<%= config.bin %> log --url "^/api/" --status 5xx',
    `<%= config.bin %> log -q 'ReqURL ~ "^/api/" and RespStatus >= 500'`,
    `<%= config.bin %> log -q 'ReqHeader:Host eq "www.example.com" and not ReqMethod eq "GET"'`,
    `<%= config.bin %> log -g raw -q '{2}BerespStatus == 503'`,
    '<%= config.bin %> log --ndjson --count 100 > sample.ndjson',
  ];
  static override flags = {
    ...adminFlags,
    grouping: Flags.string({
      char: 'g',
      summary: 'request: a client request with its backend fetches (varnishlog -g request); vxid: one block per transaction, sessions included; session: a client connection with its requests, printed when it closes; raw: one record per line (vxid, tag, c/b, value), no grouping. e.g. -g vxid',
      options: ['request', 'vxid', 'session', 'raw'],
      default: 'request',
    }),
    url: Flags.string({ summary: 'Only requests whose URL matches this regular expression. e.g. --url "^/api/"', helpValue: 'REGEX' }),
    status: Flags.string({ summary: 'Only responses with this status or class. e.g. --status 404, --status 5xx', helpValue: 'CODE' }),
    query: Flags.string({
      char: 'q',
      summary: `Only groups that satisfy this varnishlog query. e.g. -q 'ReqURL ~ "^/x" and (RespStatus >= 500 or not ReqHeader:Host)'`,
      helpValue: 'QUERY',
    }),
    ndjson: Flags.boolean({ summary: 'Print NDJSON groups (replayable with sluice replay) instead of text. e.g. --ndjson' }),
    count: Flags.integer({ summary: 'Stop after N groups. e.g. --count 10', helpValue: 'N', min: 1 }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(LogCommand);
    const t = adminTarget(flags);
    checkFilters(flags.url, flags.status);
    const query = flags.query === undefined ? undefined : parseQueryFlag(flags.query);
    const grouping = flags.grouping === 'vxid' || flags.grouping === 'session' || flags.grouping === 'raw' ? flags.grouping : 'request';
    // Raw lines are printed per transaction: the proxy sends them as it does for -g vxid.
    const q = new URLSearchParams({ grouping: grouping === 'raw' ? 'vxid' : grouping });
    if (flags.url !== undefined) q.set('url', flags.url);
    if (flags.status !== undefined) q.set('status', flags.status);
    const ac = new AbortController();
    const res = await adminFetch(t, 'GET', `/log?${q.toString()}`, { signal: ac.signal });
    if (res.body === null) throw new CliError('CLI_ERR_ADMIN', 'admin API GET /log: no body');
    let n = 0;
    const onLine = (line: string): boolean => {
      const printed = printGroup(line, grouping, flags.ndjson, query);
      // --count counts what the proxy sent (a request group, a session), as before -q existed.
      if (printed > 0) n++;
      return flags.count !== undefined && n >= flags.count;
    };
    try {
      await eachLine(res.body, onLine, ac);
    } catch (e: unknown) {
      if (ac.signal.aborted) return;
      throw new CliError('CLI_ERR_ADMIN', `the admin API closed the log stream: ${(e as Error).message}`);
    }
  }
}

function checkFilters(url: string | undefined, status: string | undefined): void {
  if (url !== undefined) {
    try {
      new RegExp(url);
    } catch {
      throw new CliError('CLI_ERR_FLAG_INVALID', `--url: "${url}" is not a regular expression`);
    }
  }
  if (status !== undefined && !/^([1-5]\d\d|[1-5]xx)$/i.test(status)) {
    throw new CliError('CLI_ERR_FLAG_INVALID', `--status: "${status}" is not a status (404) or a class (5xx)`);
  }
}

function parseQueryFlag(src: string): LogQuery {
  try {
    return parseLogQuery(src);
  } catch (e: unknown) {
    if (e instanceof QuerySyntaxError) throw new CliError('CLI_ERR_FLAG_INVALID', `-q: ${e.message} in the query '${src}'`);
    throw e;
  }
}

/** Calls `onLine` for each line of the stream until it returns true (then aborts the request). */
async function eachLine(body: AsyncIterable<unknown>, onLine: (line: string) => boolean, ac: AbortController): Promise<void> {
  let buf = '';
  const decoder = new TextDecoder();
  for await (const chunk of body) {
    buf += decoder.decode(chunk as Uint8Array, { stream: true });
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (line.trim() !== '' && onLine(line)) {
        ac.abort();
        return;
      }
    }
  }
}

/** Every transaction of a group, children before their parent (the order they ended). */
function flatten(g: TxView): TxView[] {
  const all: TxView[] = [];
  const walk = (t: TxView): void => {
    t.children.forEach(walk);
    all.push({ ...t, children: [] });
  };
  walk(g);
  return all;
}

/** Prints one NDJSON line from /log as asked; returns how many groups (or transactions) it printed. */
function printGroup(line: string, grouping: 'request' | 'vxid' | 'session' | 'raw', ndjson: boolean, query: LogQuery | undefined): number {
  const overflow = /^\{"overflow":(\d+)\}$/.exec(line);
  if (overflow !== null) {
    process.stderr.write(`sluice log: ${overflow[1]} groups dropped (reader too slow)\n`);
    return 0;
  }
  if (ndjson && query === undefined && grouping !== 'raw') {
    process.stdout.write(`${line}\n`);
    return 1;
  }
  const g = parseNdjsonGroup(line);
  if (g === undefined) return 0;
  // -g vxid and -g raw: the query is asked of each transaction alone, as varnishlog does.
  const units = grouping === 'vxid' || grouping === 'raw' ? flatten(g) : [g];
  let printed = 0;
  for (const u of units) {
    if (query !== undefined && !matchesQuery(query, u)) continue;
    printed++;
    if (grouping === 'raw') process.stdout.write(formatRaw(u));
    else if (ndjson) process.stdout.write(units.length === 1 ? `${line}\n` : formatNdjson(u));
    else process.stdout.write(formatVarnishlog(u, grouping === 'vxid' ? 'request' : grouping));
  }
  return printed;
}
