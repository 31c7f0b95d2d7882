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
  fetch_failed: number;
  /** Background fetches started for objects in grace. */
  bgfetch: number;
  /** Client requests answered by the slicer, and segment subrequests it made (each also a hit or a miss). */
  slice_req: number;
  slice_segments: number;
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
    fetch_failed: 0,
    bgfetch: 0,
    slice_req: 0,
    slice_segments: 0,
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
  };
}
