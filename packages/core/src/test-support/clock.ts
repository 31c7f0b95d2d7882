/** A hand-moved clock for proxy tests (`now` option): starts at a fixed instant, moves only when told. */
export function testClock(startMs = Date.parse('2026-12-01T12:00:00Z')): { now: () => number; advance: (sec: number) => void } {
  let t = startMs;
  return { now: () => t, advance: (sec) => void (t += sec * 1000) };
}
