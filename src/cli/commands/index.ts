// commands: one file per command group; each registers its commands on the program.
export { registerActivityCommands } from './activity.js';
export { registerBackupCommands } from './backup.js';
export { registerCompletionCommand } from './completion.js';
export { registerEnvironmentCommands } from './environment.js';
export { registerGatewayCommand } from './gateway.js';
export { registerQuickstartCommand } from './quickstart.js';
export { registerRepoCommands } from './repo.js';
