// Every failure a user can see is a BunkerError with a stable code. Codes map to exit codes
// (CLI) and HTTP statuses (API) only at the edges; docs/errors.md lists them.

export const ERROR_CODES = {
  usage: 'The command line or a request is malformed.',
  config_invalid: 'bunker.yaml is malformed or fails validation.',
  config_not_found: 'No bunker.yaml was found.',
  not_found: 'A named thing (environment, service, backup, activity) does not exist.',
  repo_not_found: 'No repository exists at the configured location.',
  repo_exists: 'A repository already exists at that location.',
  wrong_password: 'The repository password does not open any key slot.',
  password_missing: 'No repository password was given.',
  corrupt: 'Stored data failed an integrity check (authentication tag, hash or structure).',
  locked: 'Another process holds a lock that this operation needs.',
  storage: 'The storage backend failed.',
  engine: 'A service engine failed (connection, dump or load tool).',
  engine_unavailable: 'The engine for a service type is not available.',
  unreachable: 'A service could not be reached.',
  inactive_environment: 'The environment is inactive.',
  not_restorable: 'The backup is not complete or its data is missing.',
  target_mismatch: 'The restore target lacks a service or mount, or its type differs.',
  unsafe_path: 'A path in a snapshot would escape the restore target.',
  aborted: 'The operation was cancelled.',
  timeout: 'The operation took longer than its limit.',
  confirmation_required: 'A destructive command needs --yes when not on a terminal.',
  forbidden: 'The caller lacks the role this needs.',
  internal: 'A bug in Bunker.',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface BunkerErrorOptions {
  /** What the user can do about it, one sentence. */
  hint?: string;
  cause?: unknown;
  /** Structured facts for the activity log / API (never secrets). */
  details?: Record<string, unknown>;
}

export class BunkerError extends Error {
  readonly code: ErrorCode;
  readonly hint: string | undefined;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options: BunkerErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'BunkerError';
    this.code = code;
    this.hint = options.hint;
    this.details = options.details;
  }
}

export function isBunkerError(err: unknown, code?: ErrorCode): err is BunkerError {
  return err instanceof BunkerError && (code === undefined || err.code === code);
}

/** Exit code for the CLI: 2 for usage errors, 1 for everything else. */
export function exitCodeFor(err: unknown): number {
  return isBunkerError(err, 'usage') ? 2 : 1;
}

/** Wraps any thrown value as a BunkerError, keeping BunkerErrors as they are. */
export function asBunkerError(err: unknown, code: ErrorCode = 'internal', message?: string): BunkerError {
  if (err instanceof BunkerError) return err;
  const text = err instanceof Error ? err.message : String(err);
  return new BunkerError(code, message ? `${message}: ${text}` : text, { cause: err });
}
