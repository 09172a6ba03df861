import { redact } from './redact.js';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

/** Where engines, the repository and the control plane report what they do. */
export interface Logger {
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

const ORDER: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };

/** A logger that redacts secrets and forwards lines at or above `level` to `sink`. */
export function createLogger(sink: (level: LogLevel, line: string) => void, level: LogLevel = 'info'): Logger {
  const emit = (l: LogLevel) => (message: string) => {
    if (ORDER[l] >= ORDER[level]) sink(l, redact(message));
  };
  return { debug: emit('debug'), info: emit('info'), warn: emit('warn'), error: emit('error') };
}

export const silentLogger: Logger = createLogger(() => {}, 'error');

/** Logs to stderr; the default for the CLI when no activity log is attached. */
export function stderrLogger(level: LogLevel = (process.env.BUNKER_LOG_LEVEL as LogLevel) || 'warn'): Logger {
  return createLogger((l, line) => process.stderr.write(`${l}: ${line}\n`), level);
}
