// Opening, passwords and key slots, and the errors the CLI prints as they are.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { addPassword, initRepository, openRepository, removePassword } from '../../src/repo/index.js';
import { FsBackend } from '../../src/storage/index.js';

const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});
async function emptyStorage(): Promise<FsBackend> {
  const dir = await mkdtemp(join(tmpdir(), 'bunker-keys-'));
  dirs.push(dir);
  return new FsBackend(dir);
}

describe('opening a repository', () => {
  it('says there is no repository, and a repository exists, with the location', async () => {
    const storage = await emptyStorage();
    const missing = openRepository({ storage, password: 'pw' });
    await expect(missing).rejects.toMatchObject({ code: 'repo_not_found' });
    await expect(missing).rejects.toThrow(storage.location);
    const repo = await initRepository({ storage, password: 'pw', kdf: 'fast' });
    await repo.close();
    await expect(initRepository({ storage, password: 'pw', kdf: 'fast' })).rejects.toMatchObject({ code: 'repo_exists' });
  });

  it('refuses a wrong password without revealing it, and an empty one', async () => {
    const storage = await emptyStorage();
    await (await initRepository({ storage, password: 'right horse', kdf: 'fast' })).close();
    const err = (await openRepository({ storage, password: 'wrong battery' }).then(
      () => new Error('opened'),
      (e: unknown) => e,
    )) as Error & { code: string; hint: string };
    expect(err.code).toBe('wrong_password');
    expect(err.message).not.toContain('wrong battery');
    expect(err.hint).toMatch(/BUNKER_PASSWORD/);
    await expect(openRepository({ storage, password: '' })).rejects.toMatchObject({ code: 'password_missing' });
  });

  it('stores the KDF parameters in the slot: a default-strength slot opens without options', async () => {
    const storage = await emptyStorage();
    const started = Date.now();
    await (await initRepository({ storage, password: 'pw', kdf: 'default' })).close();
    const slot = JSON.parse((await storage.get((await storage.list('keys/'))[0]!.name)).toString());
    expect(slot.kdf).toMatchObject({ N: 1 << 16, r: 8, p: 2 });
    const repo = await openRepository({ storage, password: 'pw' });
    await repo.close();
    expect(Date.now() - started).toBeGreaterThan(50); // the production KDF is deliberately slow
  });
});

describe('key slots', () => {
  it('adds and removes passwords; the data stays readable; the last slot cannot go', async () => {
    const storage = await emptyStorage();
    const repo = await initRepository({ storage, password: 'first', kdf: 'fast' });
    const ref = await repo.storeBuffer(Buffer.from('secret data'));
    await repo.close();

    await addPassword({ storage, password: 'first', newPassword: 'second', kdf: 'fast' });
    await expect(addPassword({ storage, password: 'nope', newPassword: 'x', kdf: 'fast' })).rejects.toMatchObject({ code: 'wrong_password' });
    expect((await storage.list('keys/')).length).toBe(2);

    await removePassword({ storage, password: 'first' });
    await expect(openRepository({ storage, password: 'first' })).rejects.toMatchObject({ code: 'wrong_password' });
    const again = await openRepository({ storage, password: 'second' });
    expect((await again.readBuffer(ref)).toString()).toBe('secret data');
    await again.close();

    await expect(removePassword({ storage, password: 'second' })).rejects.toThrow(/only password/);
    expect((await storage.list('keys/')).length).toBe(1);
  });

  it('a key slot from another repository does not open this one', async () => {
    const a = await emptyStorage();
    const b = await emptyStorage();
    await (await initRepository({ storage: a, password: 'same', kdf: 'fast' })).close();
    await (await initRepository({ storage: b, password: 'other', kdf: 'fast' })).close();
    // Copy a's slot into b: it unwraps with "same", but its keys do not open b's config.
    const slot = (await a.list('keys/'))[0]!;
    await b.put(slot.name, await a.get(slot.name));
    await expect(openRepository({ storage: b, password: 'same' })).rejects.toMatchObject({ code: 'corrupt' });
    await (await openRepository({ storage: b, password: 'other' })).close();
  });

  it('a damaged config is reported as corrupt, naming it, not as a wrong password', async () => {
    const storage = await emptyStorage();
    await (await initRepository({ storage, password: 'pw', kdf: 'fast' })).close();
    const config = await storage.get('config');
    config[config.length - 1]! ^= 1;
    await storage.put('config', config);
    const err = await openRepository({ storage, password: 'pw' }).then(() => null, (e: unknown) => e as Error & { code: string });
    expect(err?.code).toBe('corrupt');
    expect(err?.message).toContain('config');
    await expect(openRepository({ storage, password: 'not it' })).rejects.toMatchObject({ code: 'wrong_password' });
  });
});
