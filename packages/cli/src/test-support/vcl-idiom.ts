import { readFileSync } from 'node:fs';
import path from 'node:path';
import { request } from 'undici';
import { startScriptedOrigin, type OriginHandler, type ScriptedOrigin } from '@sluice/fixtures';
import type { Proxy } from '@sluice/core';
import { compose } from '../compose.js';
import { loadConfigFile, toConfig, type ConfigFile } from '../config.js';
import { REPO } from './run-cli.js';

/** docs/vcl/: the Sluice side of docs/vcl.md, one file per idiom. */
export const VCL_DIR = path.join(REPO, 'docs/vcl');
export const VCL_PAGE = path.join(REPO, 'docs/vcl.md');

export const snippetText = (file: string): string => readFileSync(path.join(VCL_DIR, file), 'utf8');

/** A running idiom: its proxy (in-process, as `sluice proxy --config <file>` composes it) and its origins. */
export interface Idiom {
  proxy: Proxy;
  url: string;
  origins: Record<string, ScriptedOrigin>;
  get(p: string, headers?: Record<string, string>, method?: string): Promise<{ status: number; body: string; headers: Record<string, string | string[] | undefined> }>;
  close(): Promise<void>;
}

/**
 * Loads docs/vcl/<file> (or an absolute path) with the --config loader and serves it in front of real origins: one per backend the file
 * names (its URLs replaced by the origins'), else one origin `default`.
 */
export async function startIdiom(file: string, handlers: Record<string, OriginHandler>): Promise<Idiom> {
  const loaded: ConfigFile = await loadConfigFile(path.resolve(VCL_DIR, file));
  const origins: Record<string, ScriptedOrigin> = {};
  for (const [name, h] of Object.entries(handlers)) origins[name] = await startScriptedOrigin(h);
  const named = loaded.backends?.map((b) => {
    const name = typeof b === 'string' ? b : (b.name ?? '');
    const o = origins[name];
    if (o === undefined) throw new Error(`${file}: no origin for backend ${name}`);
    return { ...(typeof b === 'string' ? { url: b } : b), url: o.url };
  });
  const defaultOrigin = origins['default'];
  const config = toConfig(named === undefined && defaultOrigin !== undefined ? { backend: [defaultOrigin.url], log: 'none' } : { log: 'none' }, { ...loaded, ...(named === undefined ? {} : { backends: named }) });
  const composed = compose(config);
  const addr = await composed.proxy.listen(0);
  const url = `http://127.0.0.1:${addr.port}`;
  return {
    proxy: composed.proxy,
    url,
    origins,
    async get(p, headers = {}, method = 'GET') {
      const r = await request(`${url}${p}`, { method, headers: { host: 'www.example', ...headers } });
      return { status: r.statusCode, body: await r.body.text(), headers: r.headers };
    },
    async close() {
      await composed.close();
      for (const o of Object.values(origins)) await o.close();
    },
  };
}
