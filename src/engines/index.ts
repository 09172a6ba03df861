// engines: the Engine contract and one folder per service type (plus files for mounts).
export * from './engine.js';
export * from './registry.js';
