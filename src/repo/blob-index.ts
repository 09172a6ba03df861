// The in-memory index of stored blobs: id → (pack, type, offset, length, plaintext length).
// A mount of a million small files is a million blobs, so entries live in flat typed arrays (~57
// bytes per blob with the hash table) instead of a Map of strings to objects (~200 bytes). Rows are
// kept in fixed blocks of BLOCK_ROWS, so growing adds a block instead of copying every row into
// arrays twice the size (at a million blobs that copy was a ~170 MB spike). Ids are HMAC-SHA-256
// outputs, uniformly distributed, so their first bytes are the hash directly.

import { INDEX_ROW_BYTES } from './index-file.js';

export type BlobType = 'data' | 'tree';

export interface IndexEntry {
  pack: string;
  type: BlobType;
  offset: number;
  length: number;
  rawLength: number;
}

const ID_BYTES = 32;
const EMPTY = -1;
const BLOCK_BITS = 16;
const BLOCK_ROWS = 1 << BLOCK_BITS;
const ROW_MASK = BLOCK_ROWS - 1;

/** BLOCK_ROWS rows: ids and the entry fields, column by column. */
class RowBlock {
  readonly ids = Buffer.alloc(BLOCK_ROWS * ID_BYTES);
  readonly pack = new Int32Array(BLOCK_ROWS);
  readonly offset = new Uint32Array(BLOCK_ROWS);
  readonly length = new Uint32Array(BLOCK_ROWS);
  readonly rawLength = new Uint32Array(BLOCK_ROWS);
  readonly tree = new Uint8Array(BLOCK_ROWS);
}

export class BlobIndex {
  private readonly blocks: RowBlock[] = [];
  /** Open addressing with linear probing: slot → row, or EMPTY. Kept at most half full. */
  private slots = new Int32Array(0);
  private count = 0;
  private readonly packNames: string[] = [];
  private readonly packNumbers = new Map<string, number>();
  /** Where lookups decode the hex id they are asked about: no allocation per lookup. */
  private readonly probe = Buffer.alloc(ID_BYTES);

  get size(): number {
    return this.count;
  }

  has(id: string): boolean {
    return this.find(id) !== EMPTY;
  }

  get(id: string): IndexEntry | undefined {
    const row = this.find(id);
    return row === EMPTY ? undefined : this.entryAt(row);
  }

  /** Adds an entry unless the id is already indexed (the first copy of a blob wins). */
  add(id: string, entry: IndexEntry): void {
    this.insert(id, this.packNumber(entry.pack), entry.type === 'tree', entry.offset, entry.length, entry.rawLength);
  }

  /**
   * Adds a pack's rows ([id, offset, length, rawLength], as index files hold them), each unless its id
   * is already indexed: add() without an entry object per blob, for opening an index of a million blobs.
   */
  addPack(pack: string, type: BlobType, rows: readonly (readonly [string, number, number, number])[]): void {
    const number = this.packNumber(pack);
    const tree = type === 'tree';
    for (const [id, offset, length, rawLength] of rows) this.insert(id, number, tree, offset, length, rawLength);
  }

  private packNumber(pack: string): number {
    let number = this.packNumbers.get(pack);
    if (number === undefined) {
      number = this.packNames.push(pack) - 1;
      this.packNumbers.set(pack, number);
    }
    return number;
  }

  /**
   * Adds a pack's rows as a binary index file holds them (`count` rows of INDEX_ROW_BYTES: a 32-byte
   * id, then offset, length and rawLength as little-endian uint32s; index-file.ts), each unless its
   * id is already indexed: no hex id, array or string per blob.
   */
  addPackRows(pack: string, type: BlobType, rows: Buffer, count: number): void {
    const number = this.packNumber(pack);
    const tree = type === 'tree';
    for (let i = 0, at = 0; i < count; i++, at += INDEX_ROW_BYTES) {
      const offset = rows.readUInt32LE(at + ID_BYTES);
      this.insertBytes(rows, at, number, tree, offset, rows.readUInt32LE(at + ID_BYTES + 4), rows.readUInt32LE(at + ID_BYTES + 8));
    }
  }

  private insert(id: string, pack: number, tree: boolean, offset: number, length: number, rawLength: number): void {
    if (!this.decode(id)) throw new Error(`not a blob id: ${id}`);
    this.insertBytes(this.probe, 0, pack, tree, offset, length, rawLength);
  }

  /** Inserts the id at `src[from]` (32 bytes) unless it is indexed already. */
  private insertBytes(src: Buffer, from: number, pack: number, tree: boolean, offset: number, length: number, rawLength: number): void {
    if (this.count * 2 >= this.slots.length) this.growSlots();
    const slot = this.slotOf(src, from);
    if (this.slots[slot] !== EMPTY) return;
    const row = this.count++;
    if ((row & ROW_MASK) === 0) this.blocks.push(new RowBlock());
    const block = this.blocks[row >>> BLOCK_BITS]!;
    const at = row & ROW_MASK;
    src.copy(block.ids, at * ID_BYTES, from, from + ID_BYTES);
    block.pack[at] = pack;
    block.offset[at] = offset;
    block.length[at] = length;
    block.rawLength[at] = rawLength;
    block.tree[at] = tree ? 1 : 0;
    this.slots[slot] = row;
  }

  *values(): IterableIterator<IndexEntry> {
    for (let row = 0; row < this.count; row++) yield this.entryAt(row);
  }

  private entryAt(row: number): IndexEntry {
    const block = this.blocks[row >>> BLOCK_BITS]!;
    const at = row & ROW_MASK;
    return {
      pack: this.packNames[block.pack[at]!]!,
      type: block.tree[at] ? 'tree' : 'data',
      offset: block.offset[at]!,
      length: block.length[at]!,
      rawLength: block.rawLength[at]!,
    };
  }

  /** Writes a 64-hex-digit id into `probe`; false for anything else. */
  private decode(id: string): boolean {
    return id.length === 2 * ID_BYTES && this.probe.write(id, 'hex') === ID_BYTES;
  }

  private find(id: string): number {
    if (this.count === 0 || !this.decode(id)) return EMPTY;
    return this.slots[this.slotOf(this.probe)]!;
  }

  /** The slot holding `id` (32 bytes at `ids[from]`), or the empty slot where it would go. */
  private slotOf(id: Buffer, from = 0): number {
    const mask = this.slots.length - 1;
    for (let slot = id.readUInt32LE(from) & mask; ; slot = (slot + 1) & mask) {
      const row = this.slots[slot]!;
      if (row === EMPTY) return slot;
      const block = this.blocks[row >>> BLOCK_BITS]!;
      const at = (row & ROW_MASK) * ID_BYTES;
      if (block.ids.compare(id, from, from + ID_BYTES, at, at + ID_BYTES) === 0) return slot;
    }
  }

  /** Doubles the table and re-inserts every row (ids are unique, so each goes to an empty slot). */
  private growSlots(): void {
    this.slots = new Int32Array(Math.max(2 * BLOCK_ROWS, this.slots.length * 2)).fill(EMPTY);
    for (let row = 0; row < this.count; row++) {
      const block = this.blocks[row >>> BLOCK_BITS]!;
      this.slots[this.slotOf(block.ids, (row & ROW_MASK) * ID_BYTES)] = row;
    }
  }
}
