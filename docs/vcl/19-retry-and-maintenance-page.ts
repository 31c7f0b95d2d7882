import { defineConfig } from '@sluice/cli';

export default defineConfig({
  hooks: {
    // vcl_backend_response: a 5xx is tried again, twice at most (bereq.retries).
    upstreamResponseFilter(beresp) {
      if (beresp.status >= 500 && beresp.bereq.retries < 2) return 'retry';
      return undefined;
    },
    // vcl_backend_error: the origin cannot be reached: retry once, then a maintenance page.
    backendError(err) {
      if (err.bereq.retries < 1) return 'retry';
      return {
        synth: {
          status: 503,
          headers: { 'content-type': 'text/html; charset=utf-8', 'retry-after': '60' },
          body: '<h1>Back soon</h1>\n',
        },
      };
    },
  },
});
