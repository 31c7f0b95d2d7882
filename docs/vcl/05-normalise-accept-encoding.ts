import { defineConfig, hdr } from '@sluice/cli';

export default defineConfig({
  hooks: {
    // vcl_recv: one Accept-Encoding per encoding the origin makes, so Vary: Accept-Encoding keeps few variants.
    requestFilter(req) {
      const ae = hdr.get(req.headers, 'accept-encoding') ?? '';
      if (/\bbr\b/.test(ae)) hdr.set(req.headers, 'accept-encoding', 'br');
      else if (/\bgzip\b/.test(ae)) hdr.set(req.headers, 'accept-encoding', 'gzip');
      else hdr.delete(req.headers, 'accept-encoding');
      return undefined;
    },
  },
});
