export * from './headers.js';
export * from './cache-control.js';
export * from './dates.js';
export * from './freshness.js';
export * from './vary.js';
export * from './cache-status.js';
export * from './range.js';
export * from './conditional.js';
