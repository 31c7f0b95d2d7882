export * from './config.js';
export * from './compose.js';
export * from './errors.js';
export * from './units.js';
export * from './define-config.js';
export { builtinCacheKey, hdr } from '@sluice/core';
