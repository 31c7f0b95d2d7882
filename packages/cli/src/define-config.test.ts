import { describe, expect, expectTypeOf, it } from 'vitest';
import type { BackendResponse, DownstreamRequest, RecvAction } from '@sluice/core';
import { defineConfig, toConfig, type ConfigFile } from './index.js';

/**
 * Checked by `tsc -p tsconfig.test.json` (part of `pnpm test`): each line must be a type error, or the build fails
 * on the unused @ts-expect-error. Never called.
 */
export function refusedAtTypeLevel(): void {
  // @ts-expect-error -- unknown setting
  defineConfig({ graec: '30s' });
  // @ts-expect-error -- a hook's context must be the one newCtx makes
  defineConfig({ hooks: { newCtx: () => ({ n: 1 }), requestFilter: (_req, ctx: { m: string }) => (ctx.m === '' ? 'pass' : undefined) } });
  // @ts-expect-error -- requestFilter returns a RecvAction, not a number
  defineConfig({ hooks: { requestFilter: () => 42 } });
}

describe('defineConfig', () => {
  it('infers the hooks context from newCtx and types every hook argument', () => {
    const cfg = defineConfig({
      grace: '30s',
      hooks: {
        newCtx: () => ({ hits: 0, tag: 'x' }),
        requestFilter(req, ctx) {
          expectTypeOf(req).toEqualTypeOf<DownstreamRequest>();
          expectTypeOf(ctx).toEqualTypeOf<{ hits: number; tag: string }>();
          ctx.hits++;
          return req.url.startsWith('/admin') ? 'pass' : undefined;
        },
        upstreamResponseFilter(beresp, ctx) {
          expectTypeOf(beresp).toEqualTypeOf<BackendResponse>();
          expectTypeOf(ctx.tag).toBeString();
          return undefined;
        },
      },
    });
    expectTypeOf(cfg).toEqualTypeOf<ConfigFile<{ hits: number; tag: string }>>();
    // The type checks above are tsc's (pnpm test runs it); at run time the hooks work on the context newCtx made.
    const ctx = cfg.hooks?.newCtx?.() as { hits: number; tag: string };
    expect(cfg.hooks?.requestFilter?.({ url: '/admin/x' } as DownstreamRequest, ctx)).toBe('pass');
    expect(ctx.hits).toBe(1);
    expectTypeOf(cfg.hooks?.requestFilter).parameter(1).toEqualTypeOf<{ hits: number; tag: string }>();
    expectTypeOf<ReturnType<NonNullable<typeof cfg.hooks>['requestFilter'] & object>>().toExtend<RecvAction | undefined | Promise<RecvAction | undefined>>();
  });

  it('returns its argument unchanged, and the result loads as every config file does', () => {
    const raw = { grace: '30s', hooks: { requestFilter: () => 'pass' as const } };
    const cfg = defineConfig(raw);
    expect(cfg).toBe(raw);
    const c = toConfig({ backend: ['http://127.0.0.1:9'] }, cfg);
    expect(c.graceSec).toBe(30);
    expect(c.hooks.requestFilter).toBe(raw.hooks.requestFilter);
  });
});
