import { defineConfig, hdr } from '@sluice/cli';

const STATIC = /\.(css|js|png|jpe?g|gif|svg|woff2?|ico)(\?.*)?$/;

export default defineConfig({
  hooks: {
    // vcl_recv: static files are the same for everyone, cookie or not.
    requestFilter(req) {
      if (STATIC.test(req.url)) hdr.delete(req.headers, 'cookie');
      return undefined;
    },
    // vcl_backend_response: and a Set-Cookie on them must not make them uncacheable.
    upstreamResponseFilter(beresp) {
      if (STATIC.test(beresp.bereq.url)) hdr.delete(beresp.headers, 'set-cookie');
      return undefined;
    },
  },
});
