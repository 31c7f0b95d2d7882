import { defineConfig, hdr } from '@sluice/cli';

export default defineConfig({
  hooks: {
    // vcl_deliver: X-Cache from the object, and how often it was hit.
    responseFilter(resp) {
      hdr.set(resp.headers, 'x-cache', resp.isHit ? 'HIT' : resp.uncacheable ? 'UNCACHEABLE' : 'MISS');
      hdr.set(resp.headers, 'x-cache-hits', String(resp.hits));
    },
  },
});
