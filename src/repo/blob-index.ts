// The in-memory index of stored blobs: id → (pack, type, offset, length, plaintext length).
// A mount of a million small files is a million blobs, so entries live in flat typed arrays (about
// 60 bytes per blob including the hash table) instead of a Map of strings to objects (~200 bytes).
// Ids are HMAC-SHA-256 outputs, uniformly distributed, so their first bytes are the hash directly.

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

export class BlobIndex {
  private ids = Buffer.alloc(0);
  private packOf = new Int32Array(0);
  private offsets = new Uint32Array(0);
  private lengths = new Uint32Array(0);
  private rawLengths = new Uint32Array(0);
  private treeFlags = new Uint8Array(0);
  /** Open addressing with linear probing: slot → row, or EMPTY. Kept at most half full. */
  private slots = new Int32Array(0);
  private count = 0;
  private readonly packNames: string[] = [];
  private readonly packNumbers = new Map<string, number>();
  /** Where get()/has() decode the hex id they are asked about: no allocation per lookup. */
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
    if (this.count * 2 >= this.slots.length) this.grow();
    if (id.length !== 2 * ID_BYTES || this.probe.write(id, 'hex') !== ID_BYTES) throw new Error(`not a blob id: ${id}`);
    const mask = this.slots.length - 1;
    let slot = this.probe.readUInt32LE(0) & mask;
    for (;;) {
      const row = this.slots[slot]!;
      if (row === EMPTY) break;
      if (this.ids.compare(this.probe, 0, ID_BYTES, row * ID_BYTES, (row + 1) * ID_BYTES) === 0) return;
      slot = (slot + 1) & mask;
    }
    const row = this.count++;
    this.probe.copy(this.ids, row * ID_BYTES);
    let pack = this.packNumbers.get(entry.pack);
    if (pack === undefined) {
      pack = this.packNames.push(entry.pack) - 1;
      this.packNumbers.set(entry.pack, pack);
    }
    this.packOf[row] = pack;
    this.offsets[row] = entry.offset;
    this.lengths[row] = entry.length;
    this.rawLengths[row] = entry.rawLength;
    this.treeFlags[row] = entry.type === 'tree' ? 1 : 0;
    this.slots[slot] = row;
  }

  *values(): IterableIterator<IndexEntry> {
    for (let row = 0; row < this.count; row++) yield this.entryAt(row);
  }

  private entryAt(row: number): IndexEntry {
    return {
      pack: this.packNames[this.packOf[row]!]!,
      type: this.treeFlags[row] ? 'tree' : 'data',
      offset: this.offsets[row]!,
      length: this.lengths[row]!,
      rawLength: this.rawLengths[row]!,
    };
  }

  private find(id: string): number {
    if (this.count === 0 || id.length !== 2 * ID_BYTES || this.probe.write(id, 'hex') !== ID_BYTES) return EMPTY;
    const mask = this.slots.length - 1;
    for (let slot = this.probe.readUInt32LE(0) & mask; ; slot = (slot + 1) & mask) {
      const row = this.slots[slot]!;
      if (row === EMPTY) return EMPTY;
      if (this.ids.compare(this.probe, 0, ID_BYTES, row * ID_BYTES, (row + 1) * ID_BYTES) === 0) return row;
    }
  }

  /** Doubles the rows and the table, re-inserting every row (ids are already unique). */
  private grow(): void {
    const capacity = Math.max(1024, this.slots.length); // rows; the table gets twice as many slots
    const ids = Buffer.alloc(capacity * ID_BYTES);
    this.ids.copy(ids);
    this.ids = ids;
    this.packOf = resized(this.packOf, new Int32Array(capacity));
    this.offsets = resized(this.offsets, new Uint32Array(capacity));
    this.lengths = resized(this.lengths, new Uint32Array(capacity));
    this.rawLengths = resized(this.rawLengths, new Uint32Array(capacity));
    this.treeFlags = resized(this.treeFlags, new Uint8Array(capacity));
    this.slots = new Int32Array(capacity * 2).fill(EMPTY);
    const mask = this.slots.length - 1;
    for (let row = 0; row < this.count; row++) {
      let slot = this.ids.readUInt32LE(row * ID_BYTES) & mask;
      while (this.slots[slot] !== EMPTY) slot = (slot + 1) & mask;
      this.slots[slot] = row;
    }
  }
}

function resized<T extends Int32Array | Uint32Array | Uint8Array>(from: T, to: T): T {
  to.set(from);
  return to;
}
