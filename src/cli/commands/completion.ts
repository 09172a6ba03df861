// completion bash: a completion script generated from the registered commands, so it never goes stale.
import type { Command } from 'commander';
import { BunkerError } from '../../core/errors.js';
import { Cli } from '../context.js';

function optionWords(command: Command): string[] {
  return command.options.flatMap((o) => [o.short, o.long].filter((f): f is string => Boolean(f)));
}

export function bashCompletion(program: Command): string {
  const visible = program.commands.filter((c) => !(c as unknown as { _hidden?: boolean })._hidden);
  const names = visible.flatMap((c) => [c.name(), ...c.aliases()]);
  const global = [...optionWords(program), '--help'];
  const cases = visible
    .map((c) => `    ${[c.name(), ...c.aliases()].join('|')}) opts="${[...optionWords(c), ...global].join(' ')}" ;;`)
    .join('\n');
  return `# bash completion for bunker. Install: bunker completion bash > /etc/bash_completion.d/bunker
# or add  eval "$(bunker completion bash)"  to ~/.bashrc
_bunker() {
  local cur cmd opts i
  cur="\${COMP_WORDS[COMP_CWORD]}"
  cmd=""
  for ((i = 1; i < COMP_CWORD; i++)); do
    case "\${COMP_WORDS[i]}" in -*) ;; *) cmd="\${COMP_WORDS[i]}"; break ;; esac
  done
  # bash splits words at ":", so complete command names against the part after the last colon too.
  local words="${names.join(' ')}"
  if [[ -z "$cmd" && "$cur" != -* ]]; then
    local prefix="\${COMP_LINE:0:COMP_POINT}"; prefix="\${prefix##* }"
    COMPREPLY=( $(compgen -W "$words" -- "$prefix") )
    if [[ "$prefix" == *:* ]]; then COMPREPLY=( "\${COMPREPLY[@]#\${prefix%:*}:}" ); fi
    return 0
  fi
  case "$cmd" in
${cases}
    *) opts="${global.join(' ')}" ;;
  esac
  COMPREPLY=( $(compgen -W "$opts" -- "$cur") )
}
complete -o default -F _bunker bunker
`;
}

export function registerCompletionCommand(program: Command): void {
  program
    .command('completion')
    .description('Print a shell completion script (bash)')
    .argument('[shell]', 'the shell', 'bash')
    .action((shell: string, _opts: unknown, command: Command) => {
      const cli = Cli.from(command);
      if (shell !== 'bash') throw new BunkerError('usage', `no completion for "${shell}" yet`, { hint: 'Use `bunker completion bash`.' });
      cli.out(bashCompletion(program));
    });
}
