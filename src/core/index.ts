// core: ids, errors, clock, redaction and logging. No I/O beyond the process's own streams.
export * from './errors.js';
export * from './ids.js';
export * from './clock.js';
export * from './redact.js';
export * from './log.js';
export * from './node-flags.js';
