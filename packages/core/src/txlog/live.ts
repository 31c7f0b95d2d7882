import type { Transaction, TxGrouping, TxSink, TxView } from './txlog.js';
import { SessionGroups } from './txlog.js';
import { UrlMatcher } from './url-matcher.js';

/** What a live subscriber wants: a grouping and optional filters on the group's client request. */
export interface LiveFilter {
  grouping?: TxGrouping;
  /** Matched against the first ReqURL of the group's request, off the request path (txlog/url-matcher.ts). */
  url?: RegExp | undefined;
  /** Matched against the last RespStatus: 404, or a class such as 5 (for 5xx). */
  status?: { code: number } | { class: number } | undefined;
}

/** One subscriber: its filter, its session grouping, and (with a URL filter) its matcher and the verdicts' order. */
interface Subscriber {
  filter: LiveFilter;
  sessions: SessionGroups | undefined;
  matcher: UrlMatcher | undefined;
  /** With a matcher: what is sent waits for the verdicts before it, so groups go out in the order they ended. */
  chain: Promise<void>;
}

/**
 * The log as a live feed (what `sluice log` tails through the admin API): subscribers get each matching group; while
 * none is attached the sink is inactive, so a proxy logging nowhere else builds no records at all. A URL filter is a
 * user's regex: it never runs here, on the request path, but in the subscriber's UrlMatcher (a worker thread with a
 * time budget per URL), and the group goes out when the verdict comes back.
 */
export class LiveSink implements TxSink {
  private readonly subs = new Map<(t: TxView) => void, Subscriber>();

  get active(): boolean {
    return this.subs.size > 0;
  }

  /** Returns the unsubscribe function. */
  subscribe(filter: LiveFilter, fn: (t: TxView) => void): () => void {
    const sessions = filter.grouping === 'session' ? new SessionGroups(fn) : undefined;
    const matcher = filter.url === undefined ? undefined : new UrlMatcher(filter.url);
    this.subs.set(fn, { filter, sessions, matcher, chain: Promise.resolve() });
    return () => {
      matcher?.close();
      this.subs.delete(fn);
    };
  }

  write(root: Transaction): void {
    for (const [fn, s] of this.subs) {
      if (!statusMatches(root, s.filter)) continue;
      if (s.matcher === undefined) {
        this.send(fn, s, root);
        continue;
      }
      const url = root.records.find((r) => r.tag === 'ReqURL')?.value;
      const verdict = url === undefined ? undefined : s.matcher.test(url);
      if (verdict === undefined) continue;
      s.chain = s.chain.then(() => verdict).then((ok) => {
        if (ok && this.subs.get(fn) === s) this.send(fn, s, root);
      });
    }
  }

  private send(fn: (t: TxView) => void, s: Subscriber, root: Transaction): void {
    if (s.sessions !== undefined) s.sessions.request(root);
    else fn(root);
  }

  session(t: Transaction): void {
    for (const [fn, s] of this.subs) {
      if (s.sessions !== undefined) {
        const sessions = s.sessions;
        // After the verdicts on its requests, so they are held in it rather than let out alone.
        if (s.matcher === undefined) sessions.session(t);
        else s.chain = s.chain.then(() => sessions.session(t));
      } else if (s.filter.grouping === 'vxid' && s.filter.url === undefined && s.filter.status === undefined) fn(t);
    }
  }
}

function statusMatches(root: Transaction, f: LiveFilter): boolean {
  if (f.status === undefined) return true;
  let status: number | undefined;
  for (const r of root.records) if (r.tag === 'RespStatus') status = Number(r.value);
  if (status === undefined) return false;
  return 'code' in f.status ? status === f.status.code : Math.floor(status / 100) === f.status.class;
}
