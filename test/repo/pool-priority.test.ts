// The codec's pool threads run nicer than the rest of the process (native/bunker-codec.c,
// yield_to_services), so a backup yields the CPU to the services it reads. Linux keeps a nice value
// per thread: read each thread's from /proc.
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { NativeCodec } from '../../src/repo/native-codec.js';

function niceness(tid: string): number {
  // Fields after the command name (which is in parentheses); nice is field 19 of stat.
  const fields = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return Number(fields[16]);
}

describe.runIf(process.platform === 'linux')('codec pool priority', () => {
  it('lowers the priority of the pool threads that seal, and of no other thread', async () => {
    const codec = new NativeCodec({ encKey: randomBytes(32), idKey: randomBytes(32) }, 2);
    const own = niceness(String(process.pid));
    // Enough work at once to reach every pool thread libuv has.
    await Promise.all(Array.from({ length: 16 }, () => codec.seal(randomBytes(1 << 20), 1)));
    codec.close();
    const lowered = readdirSync('/proc/self/task').filter((tid) => niceness(tid) === Math.min(19, own + 10));
    expect(lowered.length).toBeGreaterThan(0);
    expect(niceness(String(process.pid))).toBe(own); // the main thread keeps its priority
  });
});
