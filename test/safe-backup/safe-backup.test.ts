// Done-when of issue 8: the counter app behind the gateway under ~200 requests/s during a safe backup:
// no failed request, every answer correct, and the backup restored into another environment has four
// equal counters. The same with --live reports whether the counters differ (not asserted).
import { performance } from 'node:perf_hooks';
import { afterEach, describe, expect, it } from 'vitest';
import { Project } from '../../src/control/index.js';
import { checkResults, CounterProject, redisCall, sleep, startLoad } from './fixture.js';

let fixture: CounterProject | undefined;
let project: Project | undefined;

afterEach(async () => {
  await project?.close();
  await fixture?.tearDown();
  project = undefined;
  fixture = undefined;
});

async function backupUnderLoad(live: boolean) {
  fixture = new CounterProject();
  await fixture.setUp();
  await fixture.startApp();
  project = Project.load({ configPath: fixture.configPath });
  await project.init();

  const load = startLoad(fixture.gatewayAddress, 200);
  await sleep(1_500);
  const t0 = performance.now();
  const trace = (level: string, line: string) => process.env.SAFE_BACKUP_TRACE && console.log(`+${Math.round(performance.now() - t0)} ms ${level}: ${line}`);
  const { activity, backupId } = await project.startBackup('production', { wait: true, live, onLog: trace });
  await sleep(1_000);
  trace('test', 'backup returned');
  const results = await load.stop();
  trace('test', `load stopped: ${results.length} requests`);
  for (const r of results) if (r.status !== 200) trace('test', `failed at +${Math.round(r.sentAt - t0)} ms after ${Math.round(r.latencyMs)} ms: ${r.status} ${r.error}`);
  const finished = await project.getActivity(activity.id);
  expect(finished.error).toBeNull();
  expect(finished.result).toBe('success');
  const backup = await project.getBackup(backupId);
  expect(backup.restorable).toBe(1);

  // Production is done: its Redis db becomes the spare the staging restore stages in.
  const productionFinal = await fixture.counters(fixture.production);
  await fixture.killApp();
  await fixture.stopGateway();
  await redisCall(fixture.production.redisDb, (r) => r.flushdb());

  const prep = await project.prepareRestore({ backupId, environment: 'production', target: 'staging' });
  const restore = await project.startRestore(prep, { wait: true, onLog: trace });
  expect(restore.error).toBeNull();
  expect(restore.result).toBe('success');
  const restored = await fixture.counters(fixture.staging);
  return { results, backup, productionFinal, restored };
}

// Generous: the fixture waits for the other safe-backup file's test to free Redis db 10-11.
describe('safe backup under load', { timeout: 300_000 }, () => {
  it('holds requests briefly, loses none, and restores four equal counters', async () => {
    const { results, backup, productionFinal, restored } = await backupUnderLoad(false);
    expect(results.length).toBeGreaterThan(400);
    expect(checkResults(results)).toEqual([]);
    expect(productionFinal).toEqual({ pg: results.length, redis: results.length, sqlite: results.length, file: results.length });
    expect(backup.safe).toBe(1);
    expect(backup.pause_ms).not.toBeNull();
    // The sub-second target is measured by bench/safe-backup.sh; here the hold must merely have ended by itself before its timeout.
    expect(backup.pause_ms!).toBeLessThan(30_000);

    // Taken while requests flowed, so the backup lies strictly between the first and the last request.
    expect(restored.pg).toBeGreaterThan(0);
    expect(restored.pg!).toBeLessThan(results.length);
    expect(restored).toEqual({ pg: restored.pg, redis: restored.pg, sqlite: restored.pg, file: restored.pg });
    const maxLatency = Math.max(...results.map((r) => r.latencyMs));
    console.log(`safe backup: ${results.length} requests, pause ${backup.pause_ms} ms, max latency ${maxLatency.toFixed(1)} ms, restored counters ${JSON.stringify(restored)}`);
  });

  it('--live: no hold; reports whether the restored counters differ', async () => {
    const { results, backup, restored } = await backupUnderLoad(true);
    expect(checkResults(results)).toEqual([]);
    expect(backup.safe).toBe(0);
    expect(backup.pause_ms).toBeNull();
    for (const value of Object.values(restored)) {
      expect(value).toBeGreaterThan(0);
      expect(value!).toBeLessThanOrEqual(results.length);
    }
    const values = Object.values(restored);
    const spread = Math.max(...(values as number[])) - Math.min(...(values as number[]));
    console.log(`live backup: restored counters ${JSON.stringify(restored)}: ${spread === 0 ? 'all equal this time' : `they differ by up to ${spread}`}`);
  });
});
