export * from './backend.js';
export * from './errors.js';
export * from './origin-client.js';
