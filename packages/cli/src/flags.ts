import { Flags } from '@oclif/core';

/** The proxy settings flags, shared by `proxy` and `demo`. Defaults live in toConfig so a --config file can set them. */
export const proxyFlags = {
  listen: Flags.string({
    summary: 'Address to serve clients on (default 127.0.0.1:6081). e.g. --listen 0.0.0.0:80',
    helpValue: 'HOST:PORT',
  }),
  config: Flags.string({
    summary: 'JS or TS module whose default export holds settings and policy hooks (or SLUICE_CONFIG). e.g. --config ./sluice.config.ts',
    helpValue: 'FILE',
    env: 'SLUICE_CONFIG',
  }),
  storage: Flags.string({
    summary: 'Memory budget for cached objects, LRU-evicted (default 256MB). e.g. --storage 1GB',
    helpValue: 'SIZE',
  }),
  'default-ttl': Flags.string({
    summary: 'TTL for responses without explicit freshness, as Varnish default_ttl (default: RFC 9111 heuristics only). e.g. --default-ttl 2m',
    helpValue: 'DURATION',
  }),
  profile: Flags.string({
    summary:
      "Defaults to start from: rfc (RFC 9111 strict: no default TTL, stale only where the response allows it or the origin is unreachable, expired objects kept a day for revalidation, Set-Cookie and no-cache responses stored, any status with explicit freshness stored, CDN-Cache-Control and Surrogate-Control obeyed) or varnish (Varnish's builtin: default TTL 120s, grace 10s, keep 0s, no stale when the origin is down, Set-Cookie and no-cache responses not stored). Other flags override it. e.g. --profile varnish",
    options: ['rfc', 'varnish'],
  }),
  'cache-targets': Flags.string({
    summary:
      'Targeted cache-control fields obeyed over Cache-Control and Expires, first present wins (RFC 9213), or none (default: cdn-cache-control,surrogate-control; none with --profile varnish). e.g. --cache-targets sluice-cache-control,cdn-cache-control',
    helpValue: 'LIST',
  }),
  grace: Flags.string({
    summary: 'Serve objects this long past expiry while one background fetch refreshes them, unless the response forbids stale (default 0s; 10s with --profile varnish). e.g. --grace 30s',
    helpValue: 'DURATION',
  }),
  keep: Flags.string({
    summary: 'Keep expired objects this long (bounded by --storage) to revalidate them, and to serve when the origin is unreachable (default 1d; 0s with --profile varnish). e.g. --keep 1h',
    helpValue: 'DURATION',
  }),
  'hit-for-miss-ttl': Flags.string({
    summary: 'How long an uncacheable URL is remembered as hit-for-miss (default 120s). e.g. --hit-for-miss-ttl 30s',
    helpValue: 'DURATION',
  }),
  'transit-buffer': Flags.string({
    summary: 'How far an uncached fetch may run ahead of its client (default 1MB). e.g. --transit-buffer 256k',
    helpValue: 'SIZE',
  }),
  'stream-min-bytes': Flags.string({
    summary: 'Adaptive streaming: bodies with Content-Length under SIZE are delivered whole; unknown-length bodies start once SIZE arrived (default 0: always stream). e.g. --stream-min-bytes 16k',
    helpValue: 'SIZE',
  }),
  'shutdown-timeout': Flags.string({
    summary: 'On SIGTERM/SIGINT, how long responses in flight may run before they are cut (default 30s); a second signal exits at once. e.g. --shutdown-timeout 10s',
    helpValue: 'DURATION',
  }),
  'send-timeout': Flags.string({
    summary: 'A client that takes no byte of its response for this long is cut (default 60s). e.g. --send-timeout 30s',
    helpValue: 'DURATION',
  }),
  'tunnel-idle-timeout': Flags.string({
    summary: 'A CONNECT tunnel silent both ways this long is closed (default 5m). e.g. --tunnel-idle-timeout 1m',
    helpValue: 'DURATION',
  }),
  'max-body-size': Flags.string({
    summary: 'Largest request body accepted; more gets 413 (default 100MB). e.g. --max-body-size 10MB',
    helpValue: 'SIZE',
  }),
  'body-timeout': Flags.string({
    summary: 'A request body that sends nothing for this long gets 408 (default 20s). e.g. --body-timeout 10s',
    helpValue: 'DURATION',
  }),
  'body-min-rate': Flags.string({
    summary: 'Slowest request body accepted, bytes per second averaged over 10 s; slower gets 408 (default 500; 0 turns it off). e.g. --body-min-rate 1k',
    helpValue: 'SIZE',
  }),
  'max-ranges': Flags.integer({
    summary: 'Most byte ranges honoured in one request; more and the Range is ignored (default 16). e.g. --max-ranges 4',
    helpValue: 'N',
    min: 1,
  }),
  'max-restarts': Flags.integer({
    summary: "Most restarts of one request by policy (a hook returning 'restart'); the one past it gets a 503 (default 4, as Varnish's max_restarts). e.g. --max-restarts 2",
    helpValue: 'N',
    min: 0,
  }),
  'max-retries': Flags.integer({
    summary: "Most retries of one backend fetch by policy (a hook returning 'retry'; default 4, as Varnish's max_retries). e.g. --max-retries 1",
    helpValue: 'N',
    min: 0,
  }),
  slice: Flags.string({
    summary:
      'Cache objects of at least --slice-min bytes as segments of SIZE, decided from the origin response (a 200 with Content-Length and a validator, not encoded), each segment fetched with a Range request (default off). e.g. --slice 1MB --slice-min 16MB',
    helpValue: 'SIZE',
  }),
  'slice-min': Flags.string({
    summary: 'With --slice: the smallest object that is sliced (default: one segment). e.g. --slice-min 16MB',
    helpValue: 'SIZE',
  }),
  'slice-read-ahead': Flags.integer({
    summary: 'Segments fetched ahead of the one being sent, among those a response needs (default 4, at most 16). e.g. --slice-read-ahead 4',
    helpValue: 'N',
    min: 0,
    max: 16,
  }),
  'slice-runs': Flags.boolean({
    summary:
      'With --slice: the read-ahead fetches consecutive missing segments with one origin Range request, cut into the segment objects as it arrives (default on; --no-slice-runs fetches each segment with a request of its own). e.g. --slice 1MB --no-slice-runs',
    allowNo: true,
  }),
  'slice-keep-body': Flags.boolean({
    summary:
      'With --slice and runs: a sliced object\'s 200 keeps its body as the first run, cut into segments 0, 1, ... as a whole read goes on, instead of closing its connection and fetching those segments again (default off). e.g. --slice 1MB --slice-keep-body',
    allowNo: true,
  }),
  'slice-size': Flags.string({
    summary:
      'Slice every matching GET as it arrives, before anything is known of the object (nginx slice model), into segments of SIZE (default off). e.g. --slice-size 1MB',
    helpValue: 'SIZE',
  }),
  'slice-url': Flags.string({
    summary: 'Slice only URLs matching this regular expression (default: all, with --slice or --slice-size). e.g. --slice-url "\\.(mp4|iso)$"',
    helpValue: 'REGEX',
  }),
  stream: Flags.boolean({
    summary: 'Stream bodies to clients while they arrive (doStream); --no-stream fetches whole bodies first. e.g. --no-stream',
    allowNo: true,
  }),
  log: Flags.string({
    summary: 'Transaction log: text (the layout varnishlog -g request prints), ndjson, ncsa (an access log in varnishncsa\'s default combined format, one line per request), or none (default). e.g. --log ncsa',
    options: ['none', 'text', 'ndjson', 'ncsa'],
  }),
  'log-grouping': Flags.string({
    summary: 'Transaction log blocks: request (a client request with its fetches, as varnishlog -g request), vxid (one per transaction, sessions included) or session (a connection with its requests, when it closes). e.g. --log-grouping vxid',
    options: ['request', 'vxid', 'session'],
  }),
  'log-secrets': Flags.boolean({
    summary: 'Write Authorization, Cookie and Set-Cookie values to the transaction log as they are (default: masked, e.g. "Basic ***").',
  }),
  'shared-read-buffer': Flags.boolean({
    summary: "Read client sockets into one shared 64 KiB buffer (default on: cheaper hits; it relies on fields Node sets for its onread socket option). --no-shared-read-buffer reads them the way Node reads every socket.",
    allowNo: true,
  }),
  'direct-writes': Flags.boolean({
    summary: "Write a prepared hit straight to the socket's TCP handle when nothing is queued on it (default on: cheaper large hits; it relies on Node's internal WriteWrap). --no-direct-writes writes every response through the socket's Writable.",
    allowNo: true,
  }),
  'log-format': Flags.string({
    summary: `The access log's line, as varnishncsa -F (implies --log ncsa): %h %l %u %t %r %s %b %H %m %U %q %I %O %D %T, %{Header}i, %{Header}o, %{Varnish:handling}x, %{Varnish:hitmiss}x, %{Varnish:vxid}x, %{Varnish:time_firstbyte}x, %{VSL:Tag}x. e.g. --log-format '%h "%r" %s %b %D %{Varnish:handling}x'`,
    helpValue: 'FORMAT',
  }),
  'log-file': Flags.string({ summary: 'Append the transaction log to FILE instead of stdout. e.g. --log-file /var/log/sluice.log', helpValue: 'FILE' }),
  quiet: Flags.boolean({ summary: 'Do not print log lines (backend failures, bad requests) to stderr. e.g. --quiet' }),
};

/** The admin listener, for `proxy` and `demo`. */
export const adminListenFlags = {
  'admin-listen': Flags.string({
    summary: 'Serve the admin API (stats, purge, ban, the live log) here; off by default. e.g. --admin-listen 127.0.0.1:6082',
    helpValue: 'HOST:PORT',
  }),
  'admin-token-file': Flags.string({
    summary: 'Read the admin token from the first line of FILE (keeps it out of ps; SLUICE_ADMIN_TOKEN works too). e.g. --admin-token-file /etc/sluice/token',
    helpValue: 'FILE',
  }),
  'admin-token': Flags.string({
    summary: 'Bearer token for the admin API (or SLUICE_ADMIN_TOKEN; generated and printed when unset). e.g. --admin-token s3cret-token',
    helpValue: 'TOKEN',
  }),
};
