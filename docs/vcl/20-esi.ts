import { defineConfig, hdr } from '@sluice/cli';

export default defineConfig({
  hooks: {
    // vcl_backend_response: set beresp.do_esi = true for HTML pages; each <esi:include src=...> is fetched through
    // the policy (and cached on its own), and the page streamed in order.
    upstreamResponseFilter(beresp) {
      if (hdr.get(beresp.headers, 'content-type')?.startsWith('text/html')) beresp.doEsi = true;
      return undefined;
    },
  },
});
