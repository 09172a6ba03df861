// The repository's public contract: what engines, the files archiver and the control plane may use.
// The implementation lives beside this file (repository.ts); callers depend on these types only, and
// each asks for the narrowest slice it needs (RepoWriter, RepoReader).
import type { Readable, Writable } from 'node:stream';

/** A content-addressed blob id: keyed hash of the plaintext, 64 lowercase hex characters. */
export type BlobId = string;

/**
 * A stored byte stream (a table's COPY output, a file's contents, an RDB dump). JSON-serialisable and
 * opaque to callers: store it in a manifest and hand it back to readStream(). `size` is the plaintext length.
 */
export interface StreamRef {
  size: number;
  chunks: BlobId[];
}

/** A Writable that stores what is written; done() resolves once every chunk is durably queued for packing. */
/**
 * Writes of 32 KiB or more are not copied: the repository keeps views of them until their chunk is
 * hashed (and, when new, sealed), so a buffer must not be changed or reused once written. Smaller
 * writes are copied at once.
 */
export interface StreamWriter extends Writable {
  /** Resolves after the writer has finished (end() was called and all data was accepted). */
  done(): Promise<StreamRef>;
  /** Bytes this stream added to the repository after dedup and compression (known after done()). */
  readonly storedBytes: number;
}

export interface WriteStats {
  /** Plaintext bytes written. */
  bytes: number;
  /** Bytes newly added to storage (after dedup, compression and encryption). */
  storedBytes: number;
  chunks: number;
  newChunks: number;
}

/** What a backup writes with. */
export interface RepoWriter {
  /** A stream of arbitrary size; content-defined chunking, dedup, compression and encryption. */
  writeStream(options?: { label?: string }): StreamWriter;
  /** Stores a buffer already in memory (a small file): same dedup as writeStream, fewer round trips. */
  storeBuffer(data: Uint8Array): Promise<StreamRef>;
  /** Stores a metadata blob (a directory tree object) in a metadata pack. Idempotent by content. */
  putTree(data: Uint8Array): Promise<BlobId>;
  /** True when a blob with this id is already stored or queued. */
  hasBlob(id: BlobId): boolean;
  /** Totals for everything written through this repository handle so far. */
  stats(): WriteStats;
}

/** What a restore reads with. */
export interface RepoReader {
  /** The stream's bytes, verified (every chunk's tag and id are checked while reading). */
  readStream(ref: StreamRef, options?: { highWaterMark?: number }): Readable;
  /** Reads a whole stored stream into memory; only for small streams (trees, manifests, small files). */
  readBuffer(ref: StreamRef): Promise<Buffer>;
  /** Reads a stream into `out` (exactly ref.size bytes), verified; settles only once nothing writes to `out`. */
  readInto(ref: StreamRef, out: Buffer): Promise<void>;
  getTree(id: BlobId): Promise<Buffer>;
}

/**
 * What an engine recorded for one service or mount of one backup. Stored inside the snapshot manifest.
 * `streams` and `trees` are the roots the repository follows for check and prune; `meta` is the engine's own.
 */
export interface ServiceArtifact {
  /** Engine type that wrote it (postgresql, mariadb, redis, sqlite, command, files). */
  engine: string;
  /** The engine's own format version, so a newer Bunker can still restore an older backup. */
  format: number;
  streams: Record<string, StreamRef>;
  /** Root tree ids (the files engine); other engines leave it empty. */
  trees: Record<string, BlobId>;
  meta: Record<string, unknown>;
  /** Logical size (plaintext bytes) of the service's data. */
  size: number;
  warnings: string[];
}

/** A snapshot: one backup of one environment. Encrypted in storage as snapshots/<id>. */
export interface SnapshotManifest {
  /** Format version of the manifest itself. */
  version: 1;
  time: string; // ISO 8601
  /** Free-form labels: project, environment, backup id, mode (safe|live). */
  tags: Record<string, string>;
  services: Record<string, ServiceArtifact>;
  mounts: Record<string, ServiceArtifact>;
}

export interface SnapshotSummary {
  id: string;
  time: string;
  tags: Record<string, string>;
}

export interface CheckOptions {
  /** Decrypt and verify every data blob. */
  readData?: boolean;
  /** Percentage (0–100] of packs to read and verify, chosen at random. */
  readDataSubsetPercent?: number;
  onProgress?: (message: string) => void;
}

export interface CheckResult {
  ok: boolean;
  /** One line per problem, naming the object (pack, index, snapshot) and what is wrong. */
  errors: string[];
  packsChecked: number;
  blobsChecked: number;
  snapshotsChecked: number;
}

export interface RepoStats {
  snapshots: number;
  packs: number;
  blobs: number;
  /** Sum of plaintext sizes of unique blobs. */
  uniqueBytes: number;
  /** Bytes in storage (packs + index + snapshots + keys). */
  storedBytes: number;
}

/** The whole repository handle, as the control plane uses it. */
export interface Repository extends RepoWriter, RepoReader {
  /** Writes pending packs, then the index that names them. Call before saveSnapshot(). */
  flush(): Promise<void>;
  /** Flushes, then writes the snapshot (packs → index → snapshot ordering). Returns the snapshot id. */
  saveSnapshot(manifest: SnapshotManifest): Promise<string>;
  loadSnapshot(id: string): Promise<SnapshotManifest>;
  listSnapshots(): Promise<SnapshotSummary[]>;
  /** Removes the snapshot object; its data stays until prune. */
  forgetSnapshot(id: string): Promise<void>;
  hasSnapshot(id: string): Promise<boolean>;
  check(options?: CheckOptions): Promise<CheckResult>;
  repoStats(): Promise<RepoStats>;
  /** Flushes and releases locks and workers. */
  close(): Promise<void>;
}
