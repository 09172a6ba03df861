// The command tree: global options, then each command group from ./commands.
import { Command } from 'commander';
import { readFileSync } from 'node:fs';
import {
  registerActivityCommands,
  registerBackupCommands,
  registerCompletionCommand,
  registerEnvironmentCommands,
  registerGatewayCommand,
  registerQuickstartCommand,
  registerRepoCommands,
} from './commands/index.js';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };

export function buildProgram(): Command {
  const program = new Command('bunker')
    .version(pkg.version, '-V, --version', 'print the version')
    .description('Back up and restore whole application environments: databases, caches and file mounts.')
    .option('-p, --project <project>', 'the project (its name, or the folder holding its bunker.yaml)')
    .option('-e, --environment <environment>', 'the environment to act on')
    .option('-y, --yes', 'answer yes to confirmations (needed for destructive commands without a terminal)')
    .option('--no-interaction', 'never ask questions (destructive commands then need --yes)')
    .option('-q, --quiet', 'print only results and errors')
    .option('--config <file>', 'the bunker.yaml to use (default: BUNKER_CONFIG, or the nearest bunker.yaml)')
    .exitOverride()
    .showSuggestionAfterError(true)
    .configureOutput({
      outputError: (text, write) => write(`${text.trimEnd()}\nhint: Run \`bunker help\` for the commands, or \`bunker help COMMAND\` for one.\n`),
    })
    .addHelpText(
      'after',
      `
Examples:
  bunker quickstart                     a sample project, backed up and restored
  bunker init                           create the catalog and the repository
  bunker backup:create main             back up the environment "main"
  bunker backups main                   list its backups
  bunker backup:restore --target staging -y
                                        restore the latest backup of -e ENV onto staging

The repository password comes from BUNKER_PASSWORD, BUNKER_PASSWORD_FILE or storage.password_file.`,
    );

  registerRepoCommands(program);
  registerBackupCommands(program);
  registerActivityCommands(program);
  registerEnvironmentCommands(program);
  registerGatewayCommand(program);
  registerQuickstartCommand(program);
  registerCompletionCommand(program);
  return program;
}
