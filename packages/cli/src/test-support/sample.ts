import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The shared real Varnish 7.1 sample (../shared/varnishlog beside the repository). */
export const SAMPLE_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../../../shared/varnishlog');
