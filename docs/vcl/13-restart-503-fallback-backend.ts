import { defineConfig } from '@sluice/cli';

export default defineConfig({
  backends: [
    { name: 'primary', url: 'http://10.0.0.1:8080' },
    { name: 'fallback', url: 'http://10.0.0.2:8080' },
  ],
  hooks: {
    // vcl_recv: the first try goes to the primary, a restarted request to the fallback.
    requestFilter(req) {
      req.backend = req.restarts === 0 ? 'primary' : 'fallback';
      return undefined;
    },
    // vcl_deliver (and vcl_synth, for a fetch that failed outright): try once more elsewhere.
    responseFilter(resp, req) {
      if (resp.status >= 500 && req.restarts === 0) return 'restart';
      return undefined;
    },
  },
});
