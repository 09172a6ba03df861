// init, repo:init, repo:check, repo:stats.
import type { Command } from 'commander';
import { BunkerError } from '../../core/errors.js';
import { Cli } from '../context.js';
import { formatBytes } from '../output.js';

export function registerRepoCommands(program: Command): void {
  program
    .command('init')
    .description('Create the state dir, the catalog and the repository (safe to repeat)')
    .action(async (_opts: unknown, command: Command) => {
      const cli = Cli.from(command);
      const project = cli.load();
      const created = await project.init();
      const where = project.config.storage.locations.map((l) => l.url).join(', ');
      if (!created.catalog && !created.repository) {
        cli.info(`Project ${project.config.project} is already initialised (state in ${project.config.stateDir}, repository at ${where})`);
        return;
      }
      if (created.catalog) cli.info(`Created the catalog in ${project.config.stateDir}`);
      cli.info(created.repository ? `Created the repository at ${where}` : `The repository at ${where} already exists`);
    });

  program
    .command('repo:init')
    .description('Create the repository only')
    .action(async (_opts: unknown, command: Command) => {
      const cli = Cli.from(command);
      const project = cli.load();
      const where = project.config.storage.locations.map((l) => l.url).join(', ');
      const created = await project.initRepository();
      cli.info(created ? `Created the repository at ${where}` : `The repository at ${where} already exists`);
    });

  program
    .command('repo:check')
    .description("Verify the repository's structure, and optionally its data")
    .option('--read-data', 'decrypt and verify every data blob')
    .option('--read-data-subset <percent>', 'verify this share of the packs, chosen at random (e.g. 10%)')
    .action(async (opts: { readData?: boolean; readDataSubset?: string }, command: Command) => {
      const cli = Cli.from(command);
      let subset: number | undefined;
      if (opts.readDataSubset !== undefined) {
        const match = /^(\d+(?:\.\d+)?)%?$/.exec(opts.readDataSubset.trim());
        subset = match ? Number(match[1]) : NaN;
        if (!(subset > 0 && subset <= 100)) {
          throw new BunkerError('usage', `--read-data-subset must be a percentage in (0, 100], not "${opts.readDataSubset}"`, {
            hint: 'For example --read-data-subset=10%.',
          });
        }
      }
      const project = cli.load();
      const result = await project.checkRepository({
        ...(opts.readData ? { readData: true } : {}),
        ...(subset !== undefined ? { readDataSubsetPercent: subset } : {}),
        onProgress: (message) => cli.progress(0, message),
      });
      cli.clearProgress();
      const counts = `${result.snapshotsChecked} snapshots, ${result.packsChecked} packs, ${result.blobsChecked} blobs checked`;
      if (!result.ok) {
        for (const error of result.errors) cli.warn(`  ${error}`);
        throw new BunkerError('corrupt', `the repository has ${result.errors.length} problem${result.errors.length === 1 ? '' : 's'} (${counts})`, {
          hint: 'Restore what you can from other backups; see docs/errors.md for what each problem means.',
        });
      }
      cli.out(`No errors were found (${counts})`);
    });

  program
    .command('repo:stats')
    .description('Show how much the repository holds')
    .option('--format <format>', 'plain or json', 'plain')
    .action(async (opts: { format: string }, command: Command) => {
      const cli = Cli.from(command);
      const stats = await cli.load().repositoryStats();
      if (opts.format === 'json') return cli.out(JSON.stringify(stats, null, 2));
      if (opts.format !== 'plain') throw new BunkerError('usage', `unknown format "${opts.format}"`, { hint: 'Use plain or json.' });
      cli.out(
        [
          `snapshots:    ${stats.snapshots}`,
          `packs:        ${stats.packs}`,
          `blobs:        ${stats.blobs}`,
          `unique data:  ${formatBytes(stats.uniqueBytes)} (${stats.uniqueBytes} bytes)`,
          `stored:       ${formatBytes(stats.storedBytes)} (${stats.storedBytes} bytes)`,
        ].join('\n'),
      );
    });
}
