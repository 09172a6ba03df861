// environment:list, environment:activate, environment:deactivate.
import type { Command } from 'commander';
import type { EnvironmentInfo } from '../../control/project.js';
import { Cli, collect } from '../context.js';
import { parseFormat, renderRows, selectColumns, type Column, type Format } from '../output.js';

const columns: Column<EnvironmentInfo>[] = [
  { key: 'name', header: 'Name', text: (e) => e.name },
  { key: 'type', header: 'Type', text: (e) => e.type },
  { key: 'status', header: 'Status', text: (e) => (e.active ? 'active' : 'inactive') },
  { key: 'services', header: 'Services', text: (e) => e.services.join(', ') },
  { key: 'mounts', header: 'Mounts', text: (e) => e.mounts.join(', ') },
  { key: 'gateway', header: 'Gateway', text: (e) => e.gateway ?? '', value: (e) => e.gateway },
];

export function registerEnvironmentCommands(program: Command): void {
  program
    .command('environment:list')
    .alias('environments')
    .description("List the project's environments")
    .option('--format <format>', 'table, csv, tsv, plain or json', 'table')
    .option('-c, --columns <columns>', 'columns to show (comma-separated)', collect)
    .option('--no-header', 'omit the header row')
    .action(async (opts: { format: string; columns?: string[]; header: boolean }, command: Command) => {
      const cli = Cli.from(command);
      const format = parseFormat(opts.format) as Format;
      const project = cli.load();
      const selected = selectColumns(columns, ['name', 'type', 'status', 'services', 'mounts'], opts.columns);
      if (format === 'table') cli.info(`Environments on the project ${project.config.project}:`);
      process.stdout.write(renderRows(await project.listEnvironments(), selected, format, { header: opts.header }));
    });

  for (const [name, active] of [
    ['environment:activate', true],
    ['environment:deactivate', false],
  ] as const) {
    program
      .command(name)
      .description(active ? 'Allow backups and restores on an environment' : 'Refuse backups and restores on an environment')
      .argument('[environment]', 'the environment (default: -e)')
      .action(async (environment: string | undefined, _opts: unknown, command: Command) => {
        const cli = Cli.from(command);
        const project = cli.load();
        const env = cli.environment(environment);
        const changed = await project.setActive(env, active);
        cli.info(`Environment ${env} is ${changed ? 'now' : 'already'} ${active ? 'active' : 'inactive'}`);
      });
  }
}
