import { defineConfig } from '@sluice/cli';

export default defineConfig({
  hooks: {
    // vcl_recv: never cache the admin and account pages.
    requestFilter(req) {
      if (/^\/(admin|account)(\/|$)/.test(req.url)) return 'pass';
      return undefined; // builtin rules for the rest
    },
  },
});
