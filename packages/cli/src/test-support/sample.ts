import path from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');

/**
 * The real Varnish 7.1 sample (a recorded session of 38 requests), copied from ../shared/varnishlog into the
 * repository by fixtures/scripts/copy-sample.mjs so the tests run from a clone alone.
 */
export const SAMPLE_DIR = path.join(REPO, 'fixtures/varnishlog');

/** The committed policy that makes Sluice behave as the sample's Varnish (its default.vcl and parameters). */
export const SAMPLE_POLICY = path.join(REPO, 'fixtures/sample-vcl.config.mjs');

/** Traces committed with the project, cut from the shared sample by fixtures/scripts/trace-excerpt.mjs. */
export const TRACE_FIXTURES = path.join(REPO, 'fixtures/traces');
