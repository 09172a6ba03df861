// Child process for kill.test.ts: restores one MariaDB artifact from a repository, printing
// "staged" between stage() and commit() so the parent can aim its SIGKILL at the commit too.
// Usage: node restore-child.js <repo dir> <password> <artifact.json> <target url>
import { z } from 'zod';
import { readFileSync } from 'node:fs';
import { silentLogger } from '../../src/core/log.js';
import { mariadbEngine } from '../../src/engines/mariadb/index.js';
import { openRepository } from '../../src/repo/index.js';
import type { ServiceArtifact } from '../../src/repo/types.js';
import { FsBackend } from '../../src/storage/index.js';

const [dir, password, artifactPath, url] = process.argv.slice(2);
const repo = await openRepository({ storage: new FsBackend(dir!), password: password! });
const artifact = JSON.parse(readFileSync(artifactPath!, 'utf8')) as ServiceArtifact;
const engine = mariadbEngine.create('db', mariadbEngine.configSchema(z).parse({ url }), { configDir: '/tmp', stateDir: '/tmp', log: silentLogger });
const session = await engine.openRestore(
  { repo, log: silentLogger, progress: () => {}, signal: new AbortController().signal, options: {} },
  artifact,
);
await session.stage();
process.stdout.write('staged\n');
await session.commit();
process.stdout.write('committed\n');
await repo.close();
process.exit(0);
