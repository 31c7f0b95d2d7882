import { defineConfig } from '@sluice/cli';

export default defineConfig({
  hooks: {
    // vcl_recv: utm_*, gclid and fbclid change nothing on the page: one cached copy for all of them.
    requestFilter(req) {
      const q = req.url.indexOf('?');
      if (q < 0) return undefined;
      const params = req.url
        .slice(q + 1)
        .split('&')
        .filter((p) => p !== '' && !/^(utm_[a-z]+|gclid|fbclid)(=|$)/.test(p));
      req.url = params.length > 0 ? `${req.url.slice(0, q)}?${params.join('&')}` : req.url.slice(0, q);
      return undefined;
    },
  },
});
