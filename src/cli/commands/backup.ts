// backup:create, backup:list, backup:get, backup:delete, backup:restore.
import type { Command } from 'commander';
import { stringify } from 'yaml';
import { BunkerError } from '../../core/errors.js';
import { redact } from '../../core/redact.js';
import type { Activity } from '../../control/activities.js';
import { backupSummary, type Backup, type RunObserver } from '../../control/project.js';
import { unitLabel } from '../../control/units.js';
import { Cli, collect } from '../context.js';
import { formatBytes, formatDate, parseFormat, renderRows, selectColumns, yesNo, type Column, type Format } from '../output.js';

/** Streams the activity's log and progress to the terminal while it runs in this process. */
export function observer(cli: Cli, signal: AbortSignal): RunObserver {
  return {
    signal,
    onProgress: (percent, message) => cli.progress(percent, message),
    onLog: (level, line) => (level === 'info' ? cli.info(`  ${line}`) : cli.warn(`  ${level}: ${line}`)),
    onQueued: (ahead) =>
      cli.info(`Waiting for ${ahead.length} earlier activit${ahead.length === 1 ? 'y' : 'ies'} on this environment to finish (${ahead.map((a) => a.id).join(', ')})`),
  };
}

/** Turns a finished activity into the command's outcome: a failure becomes an error (exit 1). */
export function requireSuccess(activity: Activity, what: string): void {
  if (activity.result === 'success') return;
  throw new BunkerError('engine', `${what} failed: ${activity.error ?? activity.state}`, {
    hint: `See the full log with \`bunker activity:log ${activity.id}\`.`,
  });
}

export function detachedNotice(cli: Cli, activity: Activity): void {
  cli.info(`Activity ${activity.id} runs in the background (worker pid ${activity.worker_pid}).`);
  cli.info(`Follow it with: bunker activity:log ${activity.id}`);
}

function backupColumns(dateFmt: string): Column<Backup>[] {
  return [
    { key: 'created', header: 'Created', text: (b) => formatDate(b.created_at, dateFmt), value: (b) => formatDate(b.created_at, dateFmt) },
    { key: 'id', header: 'Backup ID', text: (b) => b.id },
    { key: 'restorable', header: 'Restorable', text: (b) => yesNo(b.restorable), value: (b) => b.restorable === 1 },
    { key: 'live', header: 'Live', text: (b) => yesNo(!b.safe), value: (b) => b.safe === 0 },
    { key: 'automated', header: 'Automated', text: (b) => yesNo(b.automated), value: (b) => b.automated === 1 },
    { key: 'status', header: 'Status', text: (b) => b.status },
    { key: 'size', header: 'Size', text: (b) => formatBytes(b.size), value: (b) => b.size },
    { key: 'stored', header: 'Stored', text: (b) => formatBytes(b.stored), value: (b) => b.stored },
    { key: 'pause', header: 'Pause', text: (b) => (b.pause_ms === null ? '' : `${b.pause_ms} ms`), value: (b) => b.pause_ms },
    { key: 'expires', header: 'Expires', text: (b) => formatDate(b.expires_at, dateFmt), value: (b) => formatDate(b.expires_at, dateFmt) || null },
  ];
}

/** The record `backup:get` shows. */
function backupRecord(backup: Backup): Record<string, unknown> {
  const summary = backupSummary(backup);
  return {
    id: backup.id,
    environment: backup.environment,
    status: backup.status,
    created_at: backup.created_at,
    updated_at: backup.updated_at,
    expires_at: backup.expires_at,
    safe: backup.safe === 1,
    live: backup.safe === 0,
    automated: backup.automated === 1,
    restorable: backup.restorable === 1,
    size: backup.size,
    stored: backup.stored,
    pause_ms: backup.pause_ms,
    snapshot_id: backup.snapshot_id,
    activity_id: backup.activity_id,
    services: summary.services,
    mounts: summary.mounts,
    error: backup.error,
  };
}

/** Prints one record (or one property of it, by dotted path) as yaml or json. */
export function printRecord(cli: Cli, record: Record<string, unknown>, property: string | undefined, format: string): void {
  let value: unknown = record;
  if (property) {
    for (const part of property.split('.')) {
      if (value === null || typeof value !== 'object' || !(part in (value as object))) {
        throw new BunkerError('usage', `unknown property "${property}"`, { hint: `Properties: ${Object.keys(record).join(', ')}.` });
      }
      value = (value as Record<string, unknown>)[part];
    }
    if (value === null || typeof value !== 'object') {
      cli.out(value === null ? '' : String(value));
      return;
    }
  }
  cli.out(format === 'json' ? JSON.stringify(value, null, 2) : stringify(value));
}

export function registerBackupCommands(program: Command): void {
  program
    .command('backup:create')
    .alias('backup')
    .description('Create a backup of an environment')
    .argument('[environment]', 'the environment to back up (default: -e, or the production environment)')
    .option('--live', 'do not hold traffic: each service is snapshotted on its own (may disagree)')
    .option('-W, --no-wait', 'return at once; a background worker runs the backup')
    .action(async (environment: string | undefined, opts: { live?: boolean; wait: boolean }, command: Command) => {
      const cli = Cli.from(command);
      const project = cli.load();
      const env = cli.environment(environment);
      cli.info(`Creating a backup of ${env}${opts.live ? ' (live: no traffic hold, each service on its own)' : ''}`);
      const signal = cli.interruptSignal();
      const { activity, backupId } = await project.startBackup(env, { live: opts.live === true, wait: opts.wait, ...observer(cli, signal) });
      cli.clearProgress();
      if (!opts.wait) {
        detachedNotice(cli, activity);
        cli.out(`Backup name: ${backupId}`);
        return;
      }
      requireSuccess(activity, `the backup of ${env}`);
      cli.out(`Backup name: ${backupId}`);
    });

  program
    .command('backup:list')
    .alias('backups')
    .description("List an environment's backups, newest first")
    .argument('[environment]', 'the environment (default: -e, or the production environment)')
    .option('--format <format>', 'table, csv, tsv, plain or json', 'table')
    .option('-c, --columns <columns>', 'columns to show (comma-separated): created, id, restorable, live, automated, status, size, stored, pause, expires', collect)
    .option('--no-header', 'omit the header row')
    .option('--date-fmt <format>', 'date format (PHP date() letters)', 'c')
    .action(async (environment: string | undefined, opts: { format: string; columns?: string[]; header: boolean; dateFmt: string }, command: Command) => {
      const cli = Cli.from(command);
      const format = parseFormat(opts.format) as Format;
      const project = cli.load();
      const env = cli.environment(environment);
      const columns = selectColumns(backupColumns(opts.dateFmt), ['created', 'id', 'restorable'], opts.columns);
      const backups = await project.listBackups(env);
      if (backups.length === 0) {
        cli.warn('No backups found');
        process.exitCode = 1;
        return;
      }
      if (format === 'table') cli.info(`Backups on the project ${project.config.project}, environment ${env}:`);
      process.stdout.write(renderRows(backups, columns, format, { header: opts.header }));
    });

  program
    .command('backup:get')
    .description("Show a backup's details")
    .argument('[id]', 'the backup (default: the most recent)')
    .option('-P, --property <name>', 'print only this property (dotted path, e.g. services.db.size)')
    .option('--format <format>', 'yaml or json', 'yaml')
    .action(async (id: string | undefined, opts: { property?: string; format: string }, command: Command) => {
      const cli = Cli.from(command);
      const format = parseFormat(opts.format, ['yaml', 'json']);
      const project = cli.load();
      const backup = id ? await project.getBackup(id) : (await project.listBackups(cli.environment()))[0];
      if (!backup) throw new BunkerError('not_found', 'No backups found', { hint: 'Create one with `bunker backup:create`.' });
      printRecord(cli, backupRecord(backup), opts.property, format);
    });

  program
    .command('backup:delete')
    .description('Delete a backup')
    .argument('[id]', 'the backup (default: the most recent)')
    .option('-W, --no-wait', 'return at once; a background worker deletes it')
    .action(async (id: string | undefined, opts: { wait: boolean }, command: Command) => {
      const cli = Cli.from(command);
      const project = cli.load();
      const backup = id ? await project.getBackup(id) : (await project.listBackups(cli.environment()))[0];
      if (!backup) throw new BunkerError('not_found', 'No backups found');
      if (backup.status === 'deleted') throw new BunkerError('not_found', `backup ${backup.id} was already deleted on ${backup.updated_at}`);
      cli.info(`Backup ${backup.id} of ${backup.environment}, created ${formatDate(backup.created_at)} (${formatBytes(backup.size)})`);
      if (!(await cli.confirm('Delete this backup?', `bunker backup:delete ${backup.id}`))) {
        cli.info('Nothing deleted.');
        return;
      }
      const activity = await project.startDelete(backup.id, { wait: opts.wait, ...observer(cli, cli.interruptSignal()) });
      if (!opts.wait) return detachedNotice(cli, activity);
      requireSuccess(activity, `deleting backup ${backup.id}`);
      cli.info(`Deleted backup ${backup.id}`);
    });

  program
    .command('backup:restore')
    .description('Restore a backup onto its environment or another one')
    .argument('[id]', 'the backup (default: the most recent restorable one)')
    .option('--target <environment>', 'restore onto this environment instead (services and mounts map by name)')
    .option('--service <name>', 'restore only this service or mount (repeatable)', collect)
    .option('--path <unit:path>', "restore only this path of a mount, or this database of an all-databases service, e.g. uploads:img/2024 (repeatable)", collect)
    .option('--in-place', 'mounts: write only the files that differ, each replaced atomically, instead of staging a whole copy beside the mount')
    .option('-W, --no-wait', 'return at once; a background worker runs the restore')
    .action(async (id: string | undefined, opts: { target?: string; service?: string[]; path?: string[]; inPlace?: boolean; wait: boolean }, command: Command) => {
      const cli = Cli.from(command);
      const project = cli.load();
      const environment = id ? undefined : cli.environment();
      const paths = parseUnitPaths(opts.path ?? []);
      const prep = await project.prepareRestore({
        ...(id ? { backupId: id } : {}),
        environment: environment ?? '',
        ...(opts.target ? { target: opts.target } : {}),
        ...(opts.service ? { services: opts.service } : {}),
        ...(Object.keys(paths).length ? { paths } : {}),
        ...(opts.inPlace ? { inPlace: true } : {}),
      });
      const { backup, target, plan } = prep;
      cli.info(`Backup ${backup.id} of ${backup.environment}, created ${formatDate(backup.created_at)}${backup.safe ? '' : ' (live)'}`);
      cli.info(`This will overwrite, on environment ${target.name}:`);
      for (const item of plan) {
        const only = item.options.paths ? ` (only ${item.options.paths.join(', ')})` : '';
        const how = item.options.inPlace ? ', in place' : '';
        cli.info(`  - ${unitLabel(item)}: ${describeTarget(item.config.config)}${only}${how}`);
      }
      if (target.hooks.post_restore) cli.info(`and then run its post_restore hook: ${target.hooks.post_restore}`);
      const question = `Restore onto ${target.name}${target.type === 'production' ? ' (a production environment)' : ''}?`;
      if (!(await cli.confirm(question, `bunker backup:restore ${backup.id}${opts.target ? ` --target ${opts.target}` : ''}`))) {
        cli.info('Nothing restored.');
        return;
      }
      const activity = await project.startRestore(prep, { wait: opts.wait, ...observer(cli, cli.interruptSignal()) });
      cli.clearProgress();
      if (!opts.wait) return detachedNotice(cli, activity);
      requireSuccess(activity, `the restore onto ${target.name}`);
      cli.info(`Restored backup ${backup.id} onto ${target.name}`);
    });
}

/** `--path uploads:img/a --path uploads:img/b` → { uploads: ['img/a', 'img/b'] }. */
function parseUnitPaths(values: string[]): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const value of values) {
    const colon = value.indexOf(':');
    if (colon <= 0 || colon === value.length - 1) {
      throw new BunkerError('usage', `--path ${JSON.stringify(value)} is not UNIT:PATH`, {
        hint: 'Name the service or mount, a colon, then the path inside it: --path uploads:images/2024.',
      });
    }
    (out[value.slice(0, colon)] ??= []).push(value.slice(colon + 1));
  }
  return out;
}

/** Where a unit lives, for the confirmation: its path or URL (password masked by the logger's redact). */
function describeTarget(config: unknown): string {
  if (config && typeof config === 'object') {
    const c = config as Record<string, unknown>;
    for (const key of ['path', 'url', 'database', 'restore']) {
      if (typeof c[key] === 'string') return `${key} ${redact(c[key] as string)}`;
    }
  }
  return 'its data';
}

