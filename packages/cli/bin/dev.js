#!/usr/bin/env node
// Same as run.js; the build step (tsc -b) must have run. Kept for oclif convention.
import './run.js';
