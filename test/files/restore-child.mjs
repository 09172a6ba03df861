// Child process for the SIGKILL test: restores a files artifact from a repository on disk using the
// built engine (dist/). Prints "start" right before the restore begins and "done" after it.
// Usage: node restore-child.mjs <repoDir> <password> <configDir> <artifact.json>
import { readFileSync } from 'node:fs';
import { openRepository } from '../../dist/repo/index.js';
import { FsBackend } from '../../dist/storage/index.js';
import { filesEngine } from '../../dist/engines/files/index.js';
import { runRestore } from '../../dist/engines/engine.js';
import { silentLogger } from '../../dist/core/log.js';

const [repoDir, password, configDir, artifactFile] = process.argv.slice(2);
const repo = await openRepository({ storage: new FsBackend(repoDir), password });
const artifact = JSON.parse(readFileSync(artifactFile, 'utf8'));
const engine = filesEngine.create('m', { path: 'mount' }, { configDir, stateDir: configDir, log: silentLogger });
const session = await engine.openRestore(
  { repo, log: silentLogger, progress() {}, signal: new AbortController().signal, options: {} },
  artifact,
);
process.stdout.write('start\n');
await runRestore(session);
process.stdout.write('done\n');
await repo.close();
