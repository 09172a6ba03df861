// control: the control plane — bunker.yaml, the catalog (environments, backups, activities), the
// activity queue and workers, and the backup and restore orchestration that drives the engines.
export * from './config.js';
export * from './catalog.js';
export * from './activities.js';
export * from './backup.js';
export * from './restore.js';
export * from './project.js';
export * from './repository.js';
