import { defineConfig, hdr } from '@sluice/cli';

export default defineConfig({
  hooks: {
    // vcl_recv: analytics cookies (_ga, _gid, _fbp, utm...) are for the browser's scripts, not for the origin.
    requestFilter(req) {
      const kept = (hdr.get(req.headers, 'cookie') ?? '')
        .split(';')
        .map((c) => c.trim())
        .filter((c) => c !== '' && !/^(_ga|_gid|_gat|_fbp|__utm[a-z]*)(_[^=]*)?=/.test(c));
      if (kept.length > 0) hdr.set(req.headers, 'cookie', kept.join('; '));
      else hdr.delete(req.headers, 'cookie'); // nothing left: cacheable by the builtin rules
      return undefined;
    },
  },
});
