// The bunker command line. Commands are registered from ./commands; errors become exit codes here.
import { Command } from 'commander';
import { readFileSync } from 'node:fs';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };

const program = new Command('bunker').version(pkg.version).description('Back up and restore application environments.');
await program.parseAsync(process.argv);
