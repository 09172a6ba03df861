// gateway: runs the request-holding proxy for every environment that declares one, until stopped.
import type { Command } from 'commander';
import { BunkerError } from '../../core/errors.js';
import { createLogger } from '../../core/log.js';
import { startGateways } from '../../gateway/index.js';
import { Cli } from '../context.js';

export function registerGatewayCommand(program: Command): void {
  program
    .command('gateway')
    .description('Run the traffic gateway for environments that declare `gateway:` (until Ctrl-C)')
    .action(async (_opts: unknown, command: Command) => {
      const cli = Cli.from(command);
      const project = cli.load();
      const only = cli.options.environment ? project.environment(cli.options.environment).name : undefined;
      const specs = Object.values(project.config.environments)
        .filter((env) => env.gateway && (!only || env.name === only))
        .map((env) => ({ environment: env.name, listen: env.gateway!.listen, upstream: env.gateway!.upstream }));
      if (specs.length === 0) {
        throw new BunkerError('config_invalid', only ? `environment ${only} declares no gateway` : 'no environment declares a gateway', {
          hint: 'Add `gateway: { listen: "127.0.0.1:8080", upstream: "http://127.0.0.1:3000" }` to an environment in bunker.yaml.',
        });
      }
      const log = createLogger((level, line) => (level === 'info' || level === 'debug' ? cli.info(line) : cli.warn(`${level}: ${line}`)));
      const running = await startGateways(specs, { stateDir: project.config.stateDir, log });
      for (const spec of specs) {
        cli.info(`Gateway for ${spec.environment}: ${running.addresses[spec.environment] ?? spec.listen} -> ${spec.upstream}`);
      }
      await new Promise<void>((resolve) => {
        const stop = (sig: NodeJS.Signals) => {
          cli.info(`${sig}: stopping the gateway`);
          resolve();
        };
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
      await running.close();
    });
}
