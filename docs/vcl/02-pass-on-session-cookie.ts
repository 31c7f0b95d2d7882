import { defineConfig, hdr } from '@sluice/cli';

export default defineConfig({
  hooks: {
    // vcl_recv: logged-in users (a session cookie) are passed; everyone else is served from the cache without cookies.
    requestFilter(req) {
      if (/(^|;\s*)session=/.test(hdr.get(req.headers, 'cookie') ?? '')) return 'pass';
      hdr.delete(req.headers, 'cookie');
      return undefined;
    },
  },
});
