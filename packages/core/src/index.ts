export * from './http/index.js';
export * from './cache/cache-object.js';
export * from './cache/memory-store.js';
export * from './proxy/hooks.js';
export * from './proxy/proxy.js';
export * from './upstream.js';
export * from './errors.js';
export * from './stats.js';
