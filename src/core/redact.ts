// Secrets never reach logs, errors or activity logs. Everything that writes text a user or
// operator can read passes it through redact().

const URL_PASSWORD = /([a-z][a-z0-9+.-]*:\/\/[^:/@\s]*:)([^@\s]+)(@)/gi;
const KEY_VALUE = /\b(password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|secret[_-]?key)(["']?\s*[:=]\s*["']?)([^\s"',;&]+)/gi;
const BEARER = /\b(Bearer\s+)[A-Za-z0-9._~+/=-]+/g;

const known = new Set<string>();

/** Registers a secret value (a password read from a file, a token) so that it is masked wherever it appears. */
export function registerSecret(value: string | undefined): void {
  if (value && value.length >= 4) known.add(value);
}

export function redact(text: string): string {
  let out = text.replace(URL_PASSWORD, '$1***$3').replace(KEY_VALUE, '$1$2***').replace(BEARER, '$1***');
  for (const secret of known) out = out.split(secret).join('***');
  return out;
}

/** A connection URL with its password masked, for messages. */
export function redactUrl(url: string): string {
  return url.replace(URL_PASSWORD, '$1***$3');
}
