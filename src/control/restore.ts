// Restore orchestration: plan (map the backup's services and mounts onto the target and refuse before
// touching anything), stage every unit beside its target, hold traffic, commit every unit, run the
// post_restore hook, release. Staged units are aborted on any failure, so each is wholly old or new.
import { spawn } from 'node:child_process';
import { BunkerError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import type { RestoreOptions, RestoreSession } from '../engines/engine.js';
import { findEngine } from '../engines/registry.js';
import { holdTraffic as defaultHoldTraffic } from '../gateway/index.js';
import type { HoldReport, TrafficHold } from '../gateway/types.js';
import type { ServiceArtifact, SnapshotManifest } from '../repo/types.js';
import { HOLD_TIMEOUT_MS, type OperationContext } from './backup.js';
import type { EnvironmentConfig } from './config.js';
import { createEngine, forEachLimited, ProgressTracker, unitLabel, type Unit } from './units.js';

export interface RestorePlanItem extends Unit {
  artifact: ServiceArtifact;
  /** What the unit's engine restores (a subset of paths, in place), from the request. */
  options: RestoreOptions;
}

export interface RestoreSelection {
  /** Only these services and mounts (default: all of the backup's). */
  only?: readonly string[];
  /** Per unit, only these paths inside it (a mount's files, an all-databases service's databases); names the unit too. */
  paths?: Readonly<Record<string, readonly string[]>>;
  /** Mounts: write only changed files, each in place, instead of staging a whole second copy. */
  inPlace?: boolean;
}

/**
 * Which of the snapshot's units go where, and with which options. Throws target_mismatch when the
 * target lacks a unit or its type differs, not_found for an unknown name.
 */
export function planRestore(manifest: SnapshotManifest, target: EnvironmentConfig, selection: RestoreSelection = {}): RestorePlanItem[] {
  const paths = selection.paths ?? {};
  // A unit named by --path is restored (only those paths of it) even without --service.
  const only = [...new Set([...(selection.only ?? []), ...Object.keys(paths)])];
  const inBackup = [
    ...Object.keys(manifest.services).map((name) => ({ kind: 'services' as const, name })),
    ...Object.keys(manifest.mounts).map((name) => ({ kind: 'mounts' as const, name })),
  ];
  for (const name of Object.keys(paths)) {
    if (!inBackup.some((u) => u.name === name)) {
      throw new BunkerError('not_found', `--path names "${name}", which the backup has no service or mount of`, {
        hint: `Write --path UNIT:PATH with UNIT one of: ${inBackup.map((u) => u.name).join(', ') || 'nothing'}.`,
      });
    }
  }
  for (const name of only) {
    if (!inBackup.some((u) => u.name === name)) {
      throw new BunkerError('not_found', `the backup has no service or mount named "${name}"`, {
        hint: `It holds: ${inBackup.map((u) => u.name).join(', ') || 'nothing'}.`,
      });
    }
  }
  const selected = only.length ? inBackup.filter((u) => only.includes(u.name)) : inBackup;
  const problems: string[] = [];
  const plan: RestorePlanItem[] = [];
  for (const { kind, name } of selected) {
    const artifact = manifest[kind][name]!;
    const config = target[kind][name];
    const noun = kind === 'mounts' ? 'mount' : 'service';
    if (!config) {
      problems.push(`${target.name} has no ${noun} "${name}"`);
      continue;
    }
    const backupType = findEngine(artifact.engine)?.type ?? artifact.engine;
    if (config.type !== backupType) {
      problems.push(`${noun} "${name}" is ${backupType} in the backup but ${config.type} in ${target.name}`);
      continue;
    }
    const options: RestoreOptions = {};
    if (paths[name]?.length) options.paths = [...paths[name]!];
    if (selection.inPlace && kind === 'mounts') options.inPlace = true;
    plan.push({ kind, name, config, artifact, options });
  }
  if (problems.length) {
    throw new BunkerError('target_mismatch', `cannot restore onto ${target.name}: ${problems.join('; ')}`, {
      hint: 'Add the missing services or mounts to the target in bunker.yaml, or restore only some with --service NAME.',
      details: { problems },
    });
  }
  return plan;
}

export interface RestoreRequest {
  target: EnvironmentConfig;
  plan: RestorePlanItem[];
}

export interface RestoreOutcome {
  pauseMs: number | null;
  hook: { command: string; exitCode: number } | null;
}

export async function runRestore(ctx: OperationContext, request: RestoreRequest): Promise<RestoreOutcome> {
  const { target, plan } = request;
  const tracker = new ProgressTracker(plan.length, ctx.onProgress);
  const sessions: (RestoreSession | undefined)[] = new Array(plan.length);
  const staged = new Set<number>();
  const committed = new Set<number>();
  let hold: TrafficHold | null = null;
  let report: HoldReport | null = null;
  let hookResult: RestoreOutcome['hook'] = null;

  ctx.log.info(`Restoring ${plan.map(unitLabel).join(', ')} onto ${target.name}`);
  try {
    tracker.phase(0, 90);
    await forEachLimited(plan, 2, async (item, i) => {
      const engine = createEngine(ctx.config, target, item, ctx.log);
      const session = await engine.openRestore(
        {
          repo: ctx.repo,
          log: ctx.log,
          progress: (p) => tracker.report(i, p, item.name),
          signal: ctx.signal,
          options: item.options,
        },
        item.artifact,
      );
      sessions[i] = session;
      await session.stage();
      staged.add(i);
      tracker.report(i, 'done');
      ctx.log.info(`${unitLabel(item)}: staged`);
    });
    ctx.signal.throwIfAborted();

    if (target.gateway) {
      hold = await (ctx.holdTraffic ?? defaultHoldTraffic)({
        stateDir: ctx.config.stateDir,
        environment: target.name,
        timeoutMs: HOLD_TIMEOUT_MS,
        log: ctx.log,
      });
      if (!hold) ctx.log.info(`no gateway is running for ${target.name}: application requests were not held during the swap`);
    }
    ctx.onProgress(92, 'swapping the data in');
    // Sequential: a commit that fails leaves the units not yet committed untouched (they are aborted).
    for (const [i, session] of sessions.entries()) {
      await session!.commit();
      committed.add(i);
      ctx.log.info(`${unitLabel(plan[i]!)}: restored`);
    }
    if (target.hooks.post_restore) {
      ctx.onProgress(96, 'running the post_restore hook');
      hookResult = await runHook(target.hooks.post_restore, ctx.config.dir, ctx.log, ctx.signal);
    }
  } catch (err) {
    const pending = [...staged].filter((i) => !committed.has(i));
    await Promise.all(
      sessions.map((s, i) =>
        s && !committed.has(i) ? s.abort().catch((e) => ctx.log.warn(`aborting ${plan[i]!.name} failed: ${(e as Error).message}`)) : undefined,
      ),
    );
    if (committed.size > 0) {
      ctx.log.error(
        `restored before the failure: ${[...committed].map((i) => plan[i]!.name).join(', ')}; left as they were: ${pending.map((i) => plan[i]!.name).join(', ') || 'none'}`,
      );
    }
    throw err;
  } finally {
    if (hold) {
      report = await hold.release();
      ctx.log.info(`traffic held for ${report.pauseMs} ms (${report.heldRequests} requests waited, ${report.rejectedRequests} turned away)`);
    }
  }
  if (hookResult && hookResult.exitCode !== 0) {
    throw new BunkerError('engine', `the data was restored, but the post_restore hook exited with code ${hookResult.exitCode}`, {
      hint: 'See the activity log (`bunker activity:log ID`) for the hook output.',
    });
  }
  return { pauseMs: report?.pauseMs ?? null, hook: hookResult };
}

/** Runs the environment's post_restore hook in a shell from the config folder; output goes to the log. */
export function runHook(command: string, cwd: string, log: Logger, signal: AbortSignal): Promise<{ command: string; exitCode: number }> {
  log.info(`running post_restore hook: ${command}`);
  return new Promise((resolve, reject) => {
    const child = spawn('/bin/sh', ['-c', command], { cwd, stdio: ['ignore', 'pipe', 'pipe'], signal });
    const forward = (level: 'info' | 'warn') => {
      let partial = '';
      return (chunk: Buffer | null) => {
        const lines = (partial + (chunk ? chunk.toString('utf8') : '\n')).split('\n');
        partial = lines.pop() ?? '';
        for (const line of lines) if (chunk || line) log[level](`hook: ${line}`);
      };
    };
    const out = forward('info');
    const err = forward('warn');
    child.stdout.on('data', out).on('end', () => out(null));
    child.stderr.on('data', err).on('end', () => err(null));
    child.on('error', (err) => reject(new BunkerError('engine', `the post_restore hook could not run: ${err.message}`, { cause: err })));
    child.on('close', (code, sig) => {
      const exitCode = code ?? (sig ? 128 : 1);
      log.info(`post_restore hook exited with code ${exitCode}`);
      resolve({ command, exitCode });
    });
  });
}
