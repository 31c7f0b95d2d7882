import { defineConfig, hdr } from '@sluice/cli';

export default defineConfig({
  backends: [
    { name: 'www', url: 'http://10.0.0.1:8080' },
    { name: 'api', url: 'http://10.0.0.2:8080' },
  ],
  hooks: {
    // vcl_recv: set req.backend_hint by Host.
    requestFilter(req) {
      req.backend = /^api\./.test(hdr.get(req.headers, 'host') ?? '') ? 'api' : 'www';
      return undefined;
    },
  },
});
