// Index files: which blobs each pack holds, and where. Formats 1-3 write them as JSON with hex ids;
// format 4 writes them binary, because every process that opens a repository reads all of them
// first: for the mounts bench's 21,000 blobs that was a 1.5 MB JSON parse and a hex decode per id
// before anything else could start (docs/design/repository-format.md, "Index files").
//
// Binary layout (sealed like every object; integers little-endian):
//   "BKI" 0x04                             magic and the format that introduced it
//   per pack, to the end of the file:
//     pack id (32 bytes) type (1 byte: 0 data, 1 tree) blob count (uint32)
//     per blob: id (32 bytes) offset length rawLength (uint32 each)
import { corrupt } from './crypto.js';
import type { BlobType } from './blob-index.js';

/** [id, offset, length, rawLength]: a blob's row in a pack header or a JSON index file. */
export type BlobRow = [string, number, number, number];

export interface PackRecord {
  id: string;
  type: BlobType;
  blobs: BlobRow[];
}

/** A pack as an index file names it: rows as decoded objects (JSON) or as the file's own bytes (binary). */
export type IndexedPack = { id: string; type: BlobType } & ({ blobs: BlobRow[] } | { rows: Buffer; count: number });

const MAGIC = Buffer.from([0x42, 0x4b, 0x49, 0x04]); // "BKI" 4
const ID_BYTES = 32;
const PACK_HEAD_BYTES = ID_BYTES + 1 + 4;
/** Bytes per blob row in a binary index file. */
export const INDEX_ROW_BYTES = ID_BYTES + 12;

export function encodeIndexFile(packs: readonly PackRecord[]): Buffer {
  let size = MAGIC.length;
  for (const p of packs) size += PACK_HEAD_BYTES + p.blobs.length * INDEX_ROW_BYTES;
  const out = Buffer.allocUnsafe(size);
  let at = MAGIC.copy(out, 0);
  const id = (hex: string) => {
    // Buffer.write stops at the first character that is not hex: a short count is a malformed id.
    if (hex.length !== 2 * ID_BYTES || out.write(hex, at, ID_BYTES, 'hex') !== ID_BYTES) throw new Error(`index: not a blob or pack id: ${hex}`);
    at += ID_BYTES;
  };
  for (const p of packs) {
    id(p.id);
    out[at++] = p.type === 'tree' ? 1 : 0;
    at = out.writeUInt32LE(p.blobs.length, at);
    for (const [blob, offset, length, rawLength] of p.blobs) {
      id(blob);
      at = out.writeUInt32LE(offset, at);
      at = out.writeUInt32LE(length, at);
      at = out.writeUInt32LE(rawLength, at);
    }
  }
  return out;
}

/** The packs an index file's plaintext names, in either format; `name` is for errors. */
export function decodeIndexFile(plain: Buffer, name: string): IndexedPack[] {
  if (plain[0] === 0x7b /* "{": JSON, formats 1-3 */) {
    const parsed = JSON.parse(plain.toString('utf8')) as { version?: unknown; packs?: unknown };
    if (parsed.version !== 1 || !Array.isArray(parsed.packs)) throw corrupt(`index ${name} has an unknown format`, name);
    for (const p of parsed.packs as PackRecord[]) {
      if (typeof p?.id !== 'string' || (p.type !== 'data' && p.type !== 'tree') || !Array.isArray(p.blobs)) throw corrupt(`index ${name} lists a malformed pack`, name);
    }
    return parsed.packs as PackRecord[];
  }
  if (plain.length < MAGIC.length || !plain.subarray(0, MAGIC.length).equals(MAGIC)) throw corrupt(`index ${name} has an unknown format`, name);
  const packs: IndexedPack[] = [];
  let at = MAGIC.length;
  while (at < plain.length) {
    if (at + PACK_HEAD_BYTES > plain.length) throw corrupt(`index ${name} is truncated (a pack's entry is cut short)`, name);
    const id = plain.toString('hex', at, at + ID_BYTES);
    const typeCode = plain[at + ID_BYTES]!;
    const count = plain.readUInt32LE(at + ID_BYTES + 1);
    at += PACK_HEAD_BYTES;
    if (typeCode > 1) throw corrupt(`index ${name} gives pack ${id} an unknown type ${typeCode}`, name);
    if (at + count * INDEX_ROW_BYTES > plain.length) throw corrupt(`index ${name} is truncated (pack ${id} lists ${count} blobs)`, name);
    packs.push({ id, type: typeCode === 1 ? 'tree' : 'data', rows: plain.subarray(at, at + count * INDEX_ROW_BYTES), count });
    at += count * INDEX_ROW_BYTES;
  }
  return packs;
}

/** An indexed pack with its rows as objects (for check, which compares them with pack headers). */
export function packRecord(pack: IndexedPack): PackRecord {
  if ('blobs' in pack) return pack;
  const blobs: BlobRow[] = [];
  for (let i = 0, at = 0; i < pack.count; i++, at += INDEX_ROW_BYTES) {
    const r = pack.rows;
    blobs.push([r.toString('hex', at, at + ID_BYTES), r.readUInt32LE(at + ID_BYTES), r.readUInt32LE(at + ID_BYTES + 4), r.readUInt32LE(at + ID_BYTES + 8)]);
  }
  return { id: pack.id, type: pack.type, blobs };
}
