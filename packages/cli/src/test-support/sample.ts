import path from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');

/** The shared real Varnish 7.1 sample (../shared/varnishlog beside the repository). */
export const SAMPLE_DIR = path.resolve(REPO, '../shared/varnishlog');

/** The committed policy that makes Sluice behave as the sample's Varnish (its default.vcl and parameters). */
export const SAMPLE_POLICY = path.join(REPO, 'fixtures/sample-vcl.config.mjs');
