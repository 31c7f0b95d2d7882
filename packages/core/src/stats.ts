/**
 * varnishstat-style counters, one object per proxy instance. Names follow varnishstat's MAIN.* counters so Varnish
 * users recognise them; tests read them directly.
 */
export interface Stats {
  client_req: number;
  client_req_400: number;
  cache_hit: number;
  cache_hit_grace: number;
  cache_miss: number;
  cache_hitmiss: number;
  cache_hitpass: number;
  busy_sleep: number;
  busy_wakeup: number;
  s_fetch: number;
  s_pass: number;
  s_synth: number;
  /** Requests started over by policy (Varnish has no counter for it: Sluice's own name). */
  s_restart: number;
  /** Fetches sent again by policy ('retry'; Varnish logs them but has no MAIN counter either). */
  s_retry: number;
  fetch_failed: number;
  /** Background fetches started for objects in grace. */
  bgfetch: number;
  /** Client requests answered by the slicer, and segment subrequests it made (each also a hit or a miss). */
  slice_req: number;
  slice_segments: number;
  /** ESI subrequests made (includes), and ESI parse errors and warnings in templates as they were fetched. */
  esi_req: number;
  esi_errors: number;
  esi_warnings: number;
  /** Revalidations the origin answered 304. */
  fetch_304: number;
  /** Stale objects served because the origin failed (stale-if-error). */
  stale_if_error: number;
  backend_fail: number;
  n_lru_nuked: number;
  /** Objects removed by purge (URL or tag). */
  n_purges: number;
  bans_added: number;
  /** Objects removed by bans (at lookup or by the sweeper). */
  bans_obj_killed: number;
  /** CONNECT tunnels opened, refused, closed for idleness, and bytes relayed client->origin / origin->client. */
  tunnel_opened: number;
  tunnel_denied: number;
  tunnel_idle_closed: number;
  tunnel_bytes_up: number;
  tunnel_bytes_down: number;
  s_resp_bodybytes: number;
  s_beresp_bodybytes: number;
  /**
   * Body bytes sent to clients from unstored objects (pass, hit-for-miss, too large): dropped once sent, so the
   * socket read buffers they came in are garbage from then on (what `sluice proxy --young-gc` counts).
   */
  transit_bodybytes: number;
  /**
   * Transaction log groups not written because the log's output took writes too slowly (a stdout pipe nobody reads,
   * a FIFO or disk that stalls): dropped past a bound instead of queued (Varnish's VSL overruns its readers likewise).
   */
  log_dropped: number;
}

export function createStats(): Stats {
  return {
    client_req: 0,
    client_req_400: 0,
    cache_hit: 0,
    cache_hit_grace: 0,
    cache_miss: 0,
    cache_hitmiss: 0,
    cache_hitpass: 0,
    busy_sleep: 0,
    busy_wakeup: 0,
    s_fetch: 0,
    s_pass: 0,
    s_synth: 0,
    s_restart: 0,
    s_retry: 0,
    fetch_failed: 0,
    bgfetch: 0,
    slice_req: 0,
    slice_segments: 0,
    esi_req: 0,
    esi_errors: 0,
    esi_warnings: 0,
    fetch_304: 0,
    stale_if_error: 0,
    backend_fail: 0,
    n_lru_nuked: 0,
    n_purges: 0,
    bans_added: 0,
    bans_obj_killed: 0,
    tunnel_opened: 0,
    tunnel_denied: 0,
    tunnel_idle_closed: 0,
    tunnel_bytes_up: 0,
    tunnel_bytes_down: 0,
    s_resp_bodybytes: 0,
    s_beresp_bodybytes: 0,
    transit_bodybytes: 0,
    log_dropped: 0,
  };
}

/** What each counter counts (the HELP text of /metrics and of `sluice stats`), with its varnishstat name. */
export const STAT_HELP: Record<keyof Stats, string> = {
  client_req: 'Client requests received (MAIN.client_req)',
  client_req_400: 'Client requests refused as malformed: 400 and the like (MAIN.client_req_400)',
  cache_hit: 'Requests served from the cache (MAIN.cache_hit)',
  cache_hit_grace: 'Hits on objects in grace, served stale while refreshed (MAIN.cache_hit_grace)',
  cache_miss: 'Requests not found in the cache (MAIN.cache_miss)',
  cache_hitmiss: 'Requests for keys marked hit-for-miss (MAIN.cache_hitmiss)',
  cache_hitpass: 'Requests for keys marked hit-for-pass (MAIN.cache_hitpass)',
  busy_sleep: 'Requests parked on the waiting list of a fetch in progress (MAIN.busy_sleep)',
  busy_wakeup: 'Requests woken from the waiting list (MAIN.busy_wakeup)',
  s_fetch: 'Backend fetches started (MAIN.s_fetch)',
  s_pass: 'Requests passed to the backend (MAIN.s_pass)',
  s_synth: 'Synthetic responses (MAIN.s_synth)',
  s_restart: 'Requests restarted by policy (no Varnish counter; varnishlog shows Link req N restart)',
  s_retry: 'Backend fetches retried by policy (no Varnish counter; varnishlog shows Link bereq N retry)',
  fetch_failed: 'Fetches that failed: no response, a cut body, a failing hook (MAIN.fetch_failed)',
  bgfetch: 'Background fetches of objects in grace (MAIN.bgfetch)',
  slice_req: 'Client requests answered by the slicer',
  slice_segments: 'Segment subrequests made by the slicer',
  esi_req: 'ESI subrequests: <esi:include> elements delivered (MAIN.esi_req)',
  esi_errors: 'ESI parse errors (MAIN.esi_errors)',
  esi_warnings: 'ESI parse warnings (MAIN.esi_warnings)',
  fetch_304: 'Revalidations the origin answered 304 (MAIN.fetch_304)',
  stale_if_error: 'Stale objects served because the origin failed (stale-if-error)',
  backend_fail: 'Backend connections or requests that failed (MAIN.backend_fail)',
  n_lru_nuked: 'Objects evicted to make room (MAIN.n_lru_nuked)',
  n_purges: 'Objects removed by purge (MAIN.n_purges)',
  bans_added: 'Bans added (MAIN.bans_added)',
  bans_obj_killed: 'Objects removed by bans (MAIN.bans_obj_killed)',
  tunnel_opened: 'CONNECT tunnels opened',
  tunnel_denied: 'CONNECT tunnels refused',
  tunnel_idle_closed: 'CONNECT tunnels closed for idleness',
  tunnel_bytes_up: 'Bytes relayed client to origin in tunnels',
  tunnel_bytes_down: 'Bytes relayed origin to client in tunnels',
  s_resp_bodybytes: 'Response body bytes sent to clients (MAIN.s_resp_bodybytes)',
  s_beresp_bodybytes: 'Response body bytes received from backends (MAIN.s_beresp_bodybytes)',
  transit_bodybytes: 'Response body bytes sent to clients from unstored objects (pass, hit-for-miss, too large), dropped once sent',
  log_dropped: 'Transaction log groups dropped because the log output (pipe, FIFO, file) took writes too slowly',
};
