import path from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');

/**
 * The shared real Varnish 7.1 sample (../shared/varnishlog beside the repository). A user's clone has none: read it only
 * inside a test body, never at module level, so the tests that do not need it still load and run.
 */
export const SAMPLE_DIR = path.resolve(REPO, '../shared/varnishlog');

/** The committed policy that makes Sluice behave as the sample's Varnish (its default.vcl and parameters). */
export const SAMPLE_POLICY = path.join(REPO, 'fixtures/sample-vcl.config.mjs');

/** Traces committed with the project, cut from the shared sample by fixtures/scripts/trace-excerpt.mjs. */
export const TRACE_FIXTURES = path.join(REPO, 'fixtures/traces');
