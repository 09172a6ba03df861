// The bunker command line: builds the program, runs it, and turns every failure into `error: ...`, a
// hint and an exit code (0 success, 1 failure, 2 usage). Stack traces only with BUNKER_DEBUG=1.
import { CommanderError } from 'commander';
import { asBunkerError, exitCodeFor } from '../core/errors.js';
import { redact } from '../core/redact.js';
import { buildProgram } from './program.js';

function fail(err: unknown): never {
  const error = asBunkerError(err);
  process.stderr.write(`\r\x1b[K`.repeat(process.stderr.isTTY ? 1 : 0));
  process.stderr.write(`error: ${redact(error.message)}\n`);
  if (error.hint) process.stderr.write(`hint: ${redact(error.hint)}\n`);
  if (process.env.BUNKER_DEBUG === '1') {
    const stack = err instanceof Error ? err.stack : undefined;
    if (stack) process.stderr.write(redact(stack) + '\n');
    if (error.code === 'internal' && err instanceof Error && err.cause instanceof Error && err.cause.stack) {
      process.stderr.write(redact(err.cause.stack) + '\n');
    }
  }
  process.exit(exitCodeFor(error));
}

const program = buildProgram();
// `help NAME` for a command that does not exist is a usage error, not the general help.
const [first, second] = process.argv.slice(2);
if (first === 'help' && second && !program.commands.some((c) => c.name() === second || c.aliases().includes(second))) {
  process.stderr.write(`error: unknown command '${second}'\nhint: Run \`bunker help\` for the commands.\n`);
  process.exit(2);
}
try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    // Commander already printed its message (unknown command or option, missing argument, ...).
    const ok = ['commander.helpDisplayed', 'commander.version', 'commander.help'].includes(err.code);
    process.exit(ok ? 0 : 2);
  }
  fail(err);
}
process.exit(process.exitCode ?? 0);
