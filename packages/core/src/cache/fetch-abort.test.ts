import { describe, expect, it } from 'vitest';
import { FetchAbort } from './fetch-abort.js';

/** FetchAbort behaves as an AbortController whose signal is itself, for everything the fetch and its upstream use. */
describe('FetchAbort (issue 16: a fetch abort without an AbortSignal)', () => {
  it('runs each listener once, in the order added, on the first abort only; the reason sticks', () => {
    const a = new FetchAbort();
    const seen: string[] = [];
    const l1 = (): void => void seen.push(`1:${String(a.reason)}`);
    const l2 = (): void => void seen.push('2');
    const l3 = (): void => void seen.push('3');
    a.signal.addEventListener('abort', l1, { once: true });
    a.signal.addEventListener('abort', l2);
    a.signal.addEventListener('abort', l1);
    a.signal.addEventListener('abort', l3);
    expect(a.signal.aborted).toBe(false);
    a.abort('first');
    a.abort('second');
    expect(seen).toEqual(['1:first', '2', '3']);
    expect(a.signal.aborted).toBe(true);
    expect(a.signal.reason).toBe('first');
    expect(() => a.throwIfAborted()).toThrow();
  });

  it('a removed listener never runs; removal keeps the others and their order (also of the first slot)', () => {
    const a = new FetchAbort();
    const seen: number[] = [];
    const fns = [0, 1, 2, 3].map((i) => (): void => void seen.push(i));
    for (const f of fns) a.addEventListener('abort', f as () => void);
    a.removeEventListener('abort', fns[0] as () => void);
    a.removeEventListener('abort', fns[2] as () => void);
    const late = (): void => void seen.push(9);
    a.addEventListener('abort', late);
    a.abort();
    expect(seen).toEqual([1, 3, 9]);
  });

  it('a listener added after the abort does not run; the default reason is an AbortError', () => {
    const a = new FetchAbort();
    a.abort();
    let ran = false;
    a.addEventListener('abort', () => (ran = true));
    expect(ran).toBe(false);
    expect((a.reason as DOMException).name).toBe('AbortError');
  });

  it('a listener that throws does not stop the next; its error is reported on the next tick', async () => {
    const a = new FetchAbort();
    let second = false;
    a.addEventListener('abort', () => {
      throw new Error('listener broke');
    });
    a.addEventListener('abort', () => (second = true));
    const caught = new Promise<unknown>((resolve) => {
      const prev = process.listeners('uncaughtException');
      process.removeAllListeners('uncaughtException');
      process.once('uncaughtException', (e) => {
        for (const l of prev) process.on('uncaughtException', l);
        resolve(e);
      });
    });
    a.abort();
    expect(second).toBe(true);
    expect(String(await caught)).toContain('listener broke');
  });
});
