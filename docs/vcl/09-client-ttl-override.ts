import { defineConfig, hdr } from '@sluice/cli';

export default defineConfig({
  hooks: {
    // vcl_backend_response: the cache keeps pages an hour (a purge or ban removes them sooner)...
    upstreamResponseFilter(beresp) {
      if (hdr.get(beresp.headers, 'content-type')?.startsWith('text/html')) beresp.ttlSec = 3_600;
      return undefined;
    },
    // vcl_deliver: ...while browsers, which nobody can purge, keep them a minute.
    responseFilter(resp) {
      if (hdr.get(resp.headers, 'content-type')?.startsWith('text/html')) hdr.set(resp.headers, 'cache-control', 'public, max-age=60');
    },
  },
});
