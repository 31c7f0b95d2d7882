import { builtinCacheKey, defineConfig, hdr } from '@sluice/cli';

export default defineConfig({
  hooks: {
    // vcl_recv: classify the device once, and tell the origin.
    requestFilter(req) {
      const mobile = /Mobile|Android|iPhone/.test(hdr.get(req.headers, 'user-agent') ?? '');
      hdr.set(req.headers, 'x-device', mobile ? 'mobile' : 'desktop');
      return undefined;
    },
    // vcl_hash: hash_data(req.http.X-Device) on top of the builtin Host + URL.
    cacheKey(req) {
      return `${builtinCacheKey(req)}#${hdr.get(req.headers, 'x-device') ?? 'desktop'}`;
    },
  },
});
