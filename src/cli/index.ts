// cli: the `bunker` command line — the command tree (program.ts), one file per command group under
// commands/, output formats, prompts and the progress line. main.ts is the executable entry point.
export { buildProgram } from './program.js';
