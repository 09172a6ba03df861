// ThreadCalls moves file calls to the pool when one is slow; on a busy host that can be mere
// preemption, so the main thread gets another try after a while, with a doubling wait per trip.
// The clock is injected: `slow` is a call that takes 60 ms of it (over the 50 ms bound).
import { describe, expect, it } from 'vitest';
import { ThreadCalls } from '../../src/engines/files/fsio.js';

function setup(enabled: boolean) {
  let clock = 0;
  const calls = new ThreadCalls(enabled, () => clock);
  return {
    calls,
    advance: (ms: number) => (clock += ms),
    slow: () => calls.run(() => (clock += 60)),
    fast: () => calls.run(() => (clock += 0.01)),
  };
}

describe('ThreadCalls', () => {
  it('stays on this thread while calls are fast', async () => {
    const t = setup(true);
    for (let i = 0; i < 300; i++) {
      expect(await t.calls.ready()).toBe(true);
      t.fast();
    }
  });

  it('goes to the pool after a slow call, and tries this thread again after 1 s, then 2 s, then 4 s', async () => {
    const t = setup(true);
    expect(await t.calls.ready()).toBe(true);
    t.slow();
    expect(await t.calls.ready()).toBe(false);
    t.advance(999);
    expect(await t.calls.ready()).toBe(false);
    t.advance(2);
    expect(await t.calls.ready()).toBe(true); // the trial

    t.slow(); // tripped again: the wait doubles
    t.advance(1500);
    expect(await t.calls.ready()).toBe(false);
    t.advance(600);
    expect(await t.calls.ready()).toBe(true);

    t.slow();
    t.advance(3000);
    expect(await t.calls.ready()).toBe(false);
    t.advance(1100);
    expect(await t.calls.ready()).toBe(true);
  });

  it('counts a slow burst (over 200 µs a call on average) as a trip too', async () => {
    const t = setup(true);
    for (let i = 0; i < 128; i++) {
      expect(await t.calls.ready()).toBe(true);
      t.calls.run(() => t.advance(0.3));
    }
    expect(await t.calls.ready()).toBe(false);
    t.advance(1001);
    expect(await t.calls.ready()).toBe(true);
  });

  it('trips once for slow calls already admitted to the same burst', async () => {
    const t = setup(true);
    expect(await t.calls.ready()).toBe(true);
    t.slow();
    t.slow(); // a second caller that was admitted before the trip
    t.advance(1001 - 60);
    expect(await t.calls.ready()).toBe(true); // the wait was not doubled by the second slow call
  });

  it('made disabled, never runs on this thread', async () => {
    const t = setup(false);
    t.advance(1e9);
    expect(await t.calls.ready()).toBe(false);
  });
});
