export * from './backend.js';
export * from './directors.js';
export * from './errors.js';
export * from './health.js';
export * from './origin-client.js';
export * from './tunnel.js';
export type { AbortLike, BodySink, OriginBody } from './body.js';
