// What every command needs: the global options, the project they point at, the terminal (prompts and
// a progress line only on a TTY), and stdout/stderr writers that honour -q.
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline/promises';
import type { Command } from 'commander';
import { BunkerError } from '../core/errors.js';
import { CONFIG_FILE } from '../control/config.js';
import { Project } from '../control/project.js';

export interface GlobalOptions {
  project?: string;
  environment?: string;
  yes?: boolean;
  interaction?: boolean;
  quiet?: boolean;
  config?: string;
}

export class Cli {
  private project: Project | undefined;
  private progressShown = false;

  constructor(readonly options: GlobalOptions) {}

  static from(command: Command): Cli {
    return new Cli(command.optsWithGlobals<GlobalOptions>());
  }

  /** Prompts and progress only when a person is watching and did not ask for --no-interaction. */
  get interactive(): boolean {
    return Boolean(process.stdin.isTTY && process.stderr.isTTY) && this.options.interaction !== false;
  }

  get showProgress(): boolean {
    return Boolean(process.stderr.isTTY) && !this.options.quiet;
  }

  /**
   * The project: --config / BUNKER_CONFIG / nearest bunker.yaml. -p names the project folder, or the
   * project (must then match the config's `project`).
   */
  load(): Project {
    if (this.project) return this.project;
    let configPath = this.options.config;
    const p = this.options.project;
    if (p && !configPath && existsSync(p) && statSync(p).isDirectory() && existsSync(join(p, CONFIG_FILE))) configPath = join(p, CONFIG_FILE);
    const project = Project.load(configPath ? { configPath } : {});
    if (p && configPath !== join(p, CONFIG_FILE) && project.config.project !== p) {
      throw new BunkerError('not_found', `project "${p}" not found: ${project.config.file} is for project "${project.config.project}"`, {
        hint: 'Pass the project folder with -p DIR, or the config with --config FILE.',
      });
    }
    this.project = project;
    return project;
  }

  async close(): Promise<void> {
    await this.project?.close();
  }

  /** The environment: a positional argument, else -e, else the project's default. */
  environment(positional?: string): string {
    return this.load().defaultEnvironment(positional ?? this.options.environment).name;
  }

  out(text: string): void {
    this.clearProgress();
    process.stdout.write(text.endsWith('\n') ? text : text + '\n');
  }

  /** Informational lines on stderr; silenced by -q. */
  info(text: string): void {
    if (this.options.quiet) return;
    this.clearProgress();
    process.stderr.write(text.endsWith('\n') ? text : text + '\n');
  }

  warn(text: string): void {
    this.clearProgress();
    process.stderr.write(text.endsWith('\n') ? text : text + '\n');
  }

  progress(percent: number, message?: string): void {
    if (!this.showProgress) return;
    const width = 24;
    const filled = Math.round((Math.max(0, Math.min(100, percent)) / 100) * width);
    const bar = '#'.repeat(filled) + '-'.repeat(width - filled);
    const text = `[${bar}] ${String(Math.floor(percent)).padStart(3)}%${message ? ` ${message}` : ''}`;
    const columns = process.stderr.columns || 80;
    process.stderr.write(`\r\x1b[K${text.slice(0, columns - 1)}`);
    this.progressShown = true;
  }

  clearProgress(): void {
    if (this.progressShown) {
      process.stderr.write('\r\x1b[K');
      this.progressShown = false;
    }
  }

  /**
   * Asks before a destructive step. -y answers yes; without a terminal (or with --no-interaction) and
   * without -y the command fails instead of guessing.
   */
  async confirm(question: string, commandHint: string): Promise<boolean> {
    if (this.options.yes) return true;
    if (!this.interactive) {
      throw new BunkerError('confirmation_required', 'this command changes data and needs confirmation, but there is no terminal to ask on', {
        hint: `Add --yes (-y) to confirm: ${commandHint} -y`,
      });
    }
    const rl = createInterface({ input: process.stdin, output: process.stderr });
    try {
      const answer = (await rl.question(`${question} [y/N] `)).trim().toLowerCase();
      return answer === 'y' || answer === 'yes';
    } finally {
      rl.close();
    }
  }

  /** An AbortSignal that fires on the first SIGINT/SIGTERM; a second one exits at once. */
  interruptSignal(): AbortSignal {
    const controller = new AbortController();
    const onSignal = (sig: NodeJS.Signals) => {
      if (controller.signal.aborted) process.exit(130);
      this.warn(`\n${sig}: stopping (press Ctrl-C again to quit at once)`);
      controller.abort(new BunkerError('aborted', `interrupted by ${sig}`));
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    return controller.signal;
  }
}

export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}
