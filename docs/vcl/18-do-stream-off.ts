import { defineConfig } from '@sluice/cli';

export default defineConfig({
  hooks: {
    // vcl_backend_response: reports are fetched whole before the first byte goes out (with a Content-Length).
    upstreamResponseFilter(beresp) {
      if (beresp.bereq.url.startsWith('/reports/')) beresp.doStream = false;
      return undefined;
    },
  },
});
