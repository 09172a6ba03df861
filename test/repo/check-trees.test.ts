// check follows every snapshot's streams and trees (walked with treeReferences from tree.ts).
import { afterEach, describe, expect, it } from 'vitest';
import { encodeTree, type TreeEntry } from '../../src/repo/tree.js';
import type { BlobId, SnapshotManifest, StreamRef } from '../../src/repo/types.js';
import { createTestRepo, type TestRepo } from '../helpers/repo.js';

let t: TestRepo | undefined;
afterEach(async () => {
  await t?.cleanup();
  t = undefined;
});

function entry(name: string, over: Partial<TreeEntry>): TreeEntry {
  return { name: Buffer.from(name), type: 'file', mode: 0o644, uid: 0, gid: 0, mtimeNs: 0n, ctimeNs: 0n, ino: 1n, flags: 0, ...over };
}

function snapshot(trees: Record<string, BlobId>, streams: Record<string, StreamRef> = {}): SnapshotManifest {
  return {
    version: 1,
    time: new Date().toISOString(),
    tags: {},
    services: {},
    mounts: { uploads: { engine: 'files', format: 1, streams, trees, meta: {}, size: 0, warnings: [] } },
  };
}

describe('check walks trees', () => {
  it('passes a complete tree and names a missing file chunk and a missing subtree', async () => {
    t = await createTestRepo();
    const repo = t.repo;
    const file = await repo.storeBuffer(Buffer.from('file contents'));
    const sub = await repo.putTree(encodeTree([entry('a.txt', { content: file })]));
    const root = await repo.putTree(encodeTree([entry('dir', { type: 'dir', subtree: sub })]));
    await repo.saveSnapshot(snapshot({ root }));
    const good = await repo.check({ readData: true });
    expect(good.errors).toEqual([]);
    expect(good.snapshotsChecked).toBe(1);
    expect(good.blobsChecked).toBe(3);

    const ghostChunk = 'a'.repeat(64);
    const ghostTree = 'b'.repeat(64);
    const badSub = await repo.putTree(encodeTree([entry('lost.txt', { content: { size: 4, chunks: [ghostChunk] } })]));
    const badRoot = await repo.putTree(
      encodeTree([entry('dir', { type: 'dir', subtree: badSub }), entry('gone', { type: 'dir', subtree: ghostTree })]),
    );
    const bad = await repo.saveSnapshot(snapshot({ root: badRoot }, { extra: { size: 1, chunks: ['c'.repeat(64)] } }));
    const result = await repo.check();
    expect(result.ok).toBe(false);
    const text = result.errors.join('\n');
    expect(text).toContain(ghostChunk);
    expect(text).toContain(ghostTree);
    expect(text).toContain('c'.repeat(64));
    expect(text).toContain(bad);
  });
});
