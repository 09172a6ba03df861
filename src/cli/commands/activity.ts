// activity:list, activity:get, activity:log, and the hidden activity:run a detached worker executes.
import type { Command } from 'commander';
import { BunkerError } from '../../core/errors.js';
import { ACTIVITY_DESCRIPTIONS, activityParams, listActivities, readLog, type Activity } from '../../control/activities.js';
import type { ActivityType } from '../../control/catalog.js';
import { Cli, collect } from '../context.js';
import { formatDate, parseFormat, renderRows, selectColumns, type Column, type Format } from '../output.js';
import { printRecord } from './backup.js';

const TYPES: ActivityType[] = ['environment.backup', 'environment.restore', 'environment.backup.delete'];

function describe(a: Activity): string {
  const params = activityParams(a);
  switch (a.type) {
    case 'environment.backup':
      return `${params.live ? 'Live backup' : 'Backup'} of ${a.environment}`;
    case 'environment.restore':
      return `Restore of ${params.source ?? '?'} backup ${params.backupId ?? ''} onto ${a.environment}`;
    case 'environment.backup.delete':
      return `Deletion of backup ${params.backupId ?? ''} of ${a.environment}`;
  }
}

function activityColumns(dateFmt: string): Column<Activity>[] {
  return [
    { key: 'id', header: 'ID', text: (a) => a.id },
    { key: 'created', header: 'Created', text: (a) => formatDate(a.created_at, dateFmt) },
    { key: 'completed', header: 'Completed', text: (a) => formatDate(a.completed_at, dateFmt), value: (a) => formatDate(a.completed_at, dateFmt) || null },
    { key: 'description', header: 'Description', text: describe },
    { key: 'type', header: 'Type', text: (a) => a.type },
    { key: 'environment', header: 'Environment', text: (a) => a.environment },
    { key: 'progress', header: 'Progress', text: (a) => `${a.progress}%`, value: (a) => a.progress },
    { key: 'state', header: 'State', text: (a) => a.state },
    { key: 'result', header: 'Result', text: (a) => a.result ?? '', value: (a) => a.result },
    { key: 'backup', header: 'Backup ID', text: (a) => a.backup_id ?? '', value: (a) => a.backup_id },
    { key: 'pid', header: 'Worker PID', text: (a) => (a.worker_pid === null ? '' : String(a.worker_pid)), value: (a) => a.worker_pid },
    { key: 'error', header: 'Error', text: (a) => a.error ?? '', value: (a) => a.error },
  ];
}

export function registerActivityCommands(program: Command): void {
  program
    .command('activity:list')
    .alias('activities')
    .description('List recent activities (backups, restores, deletions), newest first')
    .option('--type <type>', `only this type: ${TYPES.join(', ')}`)
    .option('--state <state>', 'only this state: pending, in_progress, complete, cancelled')
    .option('--limit <n>', 'how many to show', '10')
    .option('--format <format>', 'table, csv, tsv, plain or json', 'table')
    .option('-c, --columns <columns>', 'columns to show (comma-separated)', collect)
    .option('--no-header', 'omit the header row')
    .option('--date-fmt <format>', 'date format (PHP date() letters)', 'c')
    .action(async (opts: { type?: string; state?: string; limit: string; format: string; columns?: string[]; header: boolean; dateFmt: string }, command: Command) => {
      const cli = Cli.from(command);
      const format = parseFormat(opts.format) as Format;
      if (opts.type && !TYPES.includes(opts.type as ActivityType)) {
        throw new BunkerError('usage', `unknown activity type "${opts.type}"`, { hint: `Use one of: ${TYPES.join(', ')}.` });
      }
      if (opts.state && !['pending', 'in_progress', 'complete', 'cancelled'].includes(opts.state)) {
        throw new BunkerError('usage', `unknown state "${opts.state}"`, { hint: 'Use pending, in_progress, complete or cancelled.' });
      }
      const limit = Number(opts.limit);
      if (!Number.isInteger(limit) || limit < 1) throw new BunkerError('usage', `--limit must be a positive integer, not "${opts.limit}"`);
      const project = cli.load();
      const environment = cli.options.environment ? project.environment(cli.options.environment).name : undefined;
      const columns = selectColumns(activityColumns(opts.dateFmt), ['id', 'created', 'description', 'progress', 'state', 'result'], opts.columns);
      const rows = await listActivities(await project.catalog(), {
        ...(environment ? { environment } : {}),
        ...(opts.type ? { type: opts.type as ActivityType } : {}),
        ...(opts.state ? { state: opts.state } : {}),
        limit,
      });
      if (rows.length === 0) {
        cli.warn('No activities found');
        process.exitCode = 1;
        return;
      }
      if (format === 'table') cli.info(`Activities on the project ${project.config.project}${environment ? `, environment ${environment}` : ''}:`);
      process.stdout.write(renderRows(rows, columns, format, { header: opts.header }));
    });

  program
    .command('activity:get')
    .description("Show an activity's details")
    .argument('<id>', 'the activity')
    .option('-P, --property <name>', 'print only this property')
    .option('--format <format>', 'yaml or json', 'yaml')
    .action(async (id: string, opts: { property?: string; format: string }, command: Command) => {
      const cli = Cli.from(command);
      const format = parseFormat(opts.format, ['yaml', 'json']);
      const a = await cli.load().getActivity(id);
      const record = { ...a, description: describe(a), params: activityParams(a) };
      printRecord(cli, record, opts.property, format);
    });

  program
    .command('activity:log')
    .description("Print an activity's log; follows it while it runs")
    .argument('<id>', 'the activity')
    .option('-t, --timestamps', 'prefix each line with its time')
    .option('--no-follow', 'print what is there and stop')
    .action(async (id: string, opts: { timestamps?: boolean; follow: boolean }, command: Command) => {
      const cli = Cli.from(command);
      const project = cli.load();
      let activity = await project.getActivity(id);
      const db = await project.catalog();
      let seq = 0;
      for (;;) {
        for (const line of await readLog(db, id, seq)) {
          seq = line.seq;
          const prefix = opts.timestamps ? `${line.at} ` : '';
          cli.out(`${prefix}${line.level === 'info' ? '' : `${line.level}: `}${line.message}`);
        }
        if (!opts.follow || activity.state === 'complete' || activity.state === 'cancelled') break;
        await new Promise((r) => setTimeout(r, 300));
        // Reading also reaps a dead worker, so following always ends; the next pass prints the last lines.
        activity = await project.getActivity(id);
      }
      activity = await project.getActivity(id);
      cli.info(`Activity ${id}: ${activity.state}${activity.result ? `, ${activity.result}` : ''}${activity.error ? ` (${activity.error})` : ''}`);
      if (activity.result === 'failure') process.exitCode = 1;
    });

  program
    .command('activity:run', { hidden: true })
    .description('Run a queued activity (used by background workers)')
    .argument('<id>', 'the activity')
    .action(async (id: string, _opts: unknown, command: Command) => {
      const cli = Cli.from(command);
      const activity = await cli.load().runActivity(id, { signal: cli.interruptSignal() });
      if (activity.result !== 'success') process.exitCode = 1;
    });
}
