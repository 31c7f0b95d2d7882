import { defineConfig, hdr } from '@sluice/cli';

export default defineConfig({
  hooks: {
    // vcl_backend_response: a personalised answer makes the URL pass for 2 minutes (return (pass(120s))), so later
    // requests neither wait for each other nor get a stored copy.
    upstreamResponseFilter(beresp) {
      if (hdr.has(beresp.headers, 'set-cookie') || hdr.get(beresp.headers, 'cache-control')?.includes('private')) {
        beresp.hitForPassSec = 120;
      }
      return undefined;
    },
  },
});
