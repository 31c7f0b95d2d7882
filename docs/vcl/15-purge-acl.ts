import { defineConfig } from '@sluice/cli';

export default defineConfig({
  // acl purge { "127.0.0.1"; "10.0.0.5"; }: the PURGE method is honoured from these addresses, 405 from others.
  purgeAllow: ['127.0.0.1', '10.0.0.5'],
});
