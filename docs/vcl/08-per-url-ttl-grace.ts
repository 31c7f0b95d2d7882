import { defineConfig } from '@sluice/cli';

export default defineConfig({
  hooks: {
    // vcl_backend_response: TTL and grace by URL, whatever the origin said.
    upstreamResponseFilter(beresp) {
      if (beresp.bereq.url.startsWith('/static/')) {
        beresp.ttlSec = 86_400;
        beresp.graceSec = 3_600;
      } else if (beresp.bereq.url.startsWith('/news/')) {
        beresp.ttlSec = 30;
        beresp.graceSec = 600; // serve a stale page for 10 minutes while it refreshes in the background
      }
      return undefined;
    },
  },
});
