import { defineConfig, hdr } from '@sluice/cli';

export default defineConfig({
  hooks: {
    // vcl_deliver: do not tell the world what runs behind the cache.
    responseFilter(resp) {
      for (const name of ['server', 'x-powered-by', 'x-aspnet-version', 'x-generator']) hdr.delete(resp.headers, name);
    },
  },
});
