export * from './processes.js';
export * from './report.js';
export * from './scenarios.js';
