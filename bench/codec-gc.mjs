// How often V8 runs a full (mark-compact) GC while the codec seals and opens 3 GB of 1 MiB blobs,
// two at a time, keeping nothing: the GCs are the ones the codec's result buffers (external memory)
// set off. Each result buffer must be counted as external memory once; counted twice, this number
// doubles (184 with the codec as of 8f262d8, 92 from 983d8cb on).
// Usage: npm run build && node bench/codec-gc.mjs
import { randomBytes } from 'node:crypto';
import { PerformanceObserver, constants } from 'node:perf_hooks';
import { NativeCodec } from '../dist/repo/native-codec.js';

const codec = new NativeCodec({ encKey: randomBytes(32), idKey: randomBytes(32) }, 2);
const data = randomBytes(1 << 20);
let fullGcs = 0;
const observer = new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) if (entry.detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) fullGcs++;
});
observer.observe({ entryTypes: ['gc'] });

const started = performance.now();
const cpu = process.cpuUsage();
for (let i = 0; i < 1500; i++) {
  const sealed = await Promise.all([codec.seal(data, 3), codec.seal(data, 3)]);
  await Promise.all(sealed.map((s) => codec.open(s.sealed, data.length, 'blob')));
}
const used = process.cpuUsage(cpu);
await new Promise((resolve) => setTimeout(resolve, 100)); // let the observer deliver the last entries
observer.disconnect();
console.log(
  `3 GB sealed and opened: ${fullGcs} full GCs, ${((performance.now() - started) / 1000).toFixed(2)} s wall, ` +
    `${((used.user + used.system) / 1e6).toFixed(2)} CPU-s`,
);
