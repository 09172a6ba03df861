// Shared by backups and restores: turning configured services and mounts into engine instances, bounded
// concurrency, and progress aggregation.
import { join } from 'node:path';
import { mkdirSync } from 'node:fs';
import type { Engine, Progress } from '../engines/engine.js';
import { getEngine } from '../engines/registry.js';
import type { Logger } from '../core/log.js';
import type { EnvironmentConfig, ProjectConfig, UnitConfig } from './config.js';

export type UnitKind = 'services' | 'mounts';

export interface Unit {
  kind: UnitKind;
  name: string;
  config: UnitConfig;
}

/** Every service, then every mount, of an environment. */
export function environmentUnits(env: EnvironmentConfig): Unit[] {
  return [
    ...Object.values(env.services).map((config) => ({ kind: 'services' as const, name: config.name, config })),
    ...Object.values(env.mounts).map((config) => ({ kind: 'mounts' as const, name: config.name, config })),
  ];
}

export function unitLabel(unit: { kind: UnitKind; name: string; config: UnitConfig }): string {
  return `${unit.kind === 'mounts' ? 'mount' : 'service'} ${unit.name} (${unit.config.type})`;
}

export function createEngine(project: ProjectConfig, env: EnvironmentConfig, unit: Unit, log: Logger): Engine {
  const stateDir = join(project.stateDir, 'tmp', env.name, `${unit.kind}-${unit.name}`);
  mkdirSync(stateDir, { recursive: true });
  return getEngine(unit.config.type).create(unit.name, unit.config.config, { configDir: project.dir, stateDir, log });
}

/** Runs `fn` over `items` with at most `limit` at once; rejects with the first failure after all settle. */
export async function forEachLimited<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  let firstError: { error: unknown } | undefined;
  const worker = async () => {
    while (next < items.length && !firstError) {
      const index = next++;
      try {
        results[index] = await fn(items[index] as T, index);
      } catch (error) {
        firstError ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (firstError) throw firstError.error;
  return results;
}

/**
 * Folds per-unit progress reports into one percentage between `from` and `to`. A unit that reports
 * bytes and a total counts by bytes; otherwise it counts as half done once it reported anything.
 */
export class ProgressTracker {
  private readonly fractions: number[];
  constructor(
    count: number,
    private readonly onPercent: (percent: number, message?: string) => void,
    private from = 0,
    private to = 100,
  ) {
    this.fractions = new Array(count).fill(0);
  }

  phase(from: number, to: number): void {
    this.from = from;
    this.to = to;
    this.fractions.fill(0);
    this.emit();
  }

  report(index: number, p: Progress | 'done', label?: string): void {
    let f: number;
    if (p === 'done') f = 1;
    else if (p.bytes !== undefined && p.totalBytes) f = Math.min(0.99, p.bytes / p.totalBytes);
    else f = Math.max(this.fractions[index] ?? 0, 0.5);
    this.fractions[index] = f;
    this.emit(p !== 'done' && p.message && label ? `${label}: ${p.message}` : undefined);
  }

  private emit(message?: string): void {
    const n = this.fractions.length || 1;
    const done = this.fractions.reduce((a, b) => a + b, 0) / n;
    this.onPercent(this.from + (this.to - this.from) * done, message);
  }
}
