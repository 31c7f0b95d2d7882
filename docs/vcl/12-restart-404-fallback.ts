import { defineConfig } from '@sluice/cli';

export default defineConfig({
  hooks: {
    // vcl_deliver: a missing image is answered with the placeholder, fetched (and cached) under its own URL.
    responseFilter(resp, req) {
      if (resp.status === 404 && req.url.startsWith('/images/') && req.restarts === 0) {
        req.url = '/images/placeholder.png';
        return 'restart';
      }
      return undefined;
    },
  },
});
