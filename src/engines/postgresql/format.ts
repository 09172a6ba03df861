// The artifact layout this engine writes (format 1): stream keys and the meta record a restore reads.
import type { SequenceEntry, TableEntry } from './catalog.js';

export const FORMAT = 1;
export const SCHEMA_STREAM = 'schema';
export const LARGE_OBJECTS_STREAM = 'large-objects';

/**
 * A table above this many pages (256 MiB of 8 KiB pages) may be copied as several ctid ranges in
 * parallel, one stream each, so that a big table is spread over a few cores.
 */
export const PART_PAGES = 32768;

/**
 * How many ctid ranges to copy a table in. Needs TID range scans (PostgreSQL 14+); a table without
 * columns is never split.
 *
 * A table larger than a quarter of shared_buffers is never split either. A plain scan of such a table
 * reads it through a small ring of buffers (PostgreSQL's bulk-read strategy), but a TID range scan has
 * no ring: every page it reads evicts another from shared_buffers. With the default 128 MB,
 * pgbench's 400 MB table cost 2.5-3.1 s of server CPU in two ranges against 1.3-1.5 s in one plain
 * scan, and the split backup was the slower one (1.03x `pg_dump -Fd -j2` against 0.76x unsplit). Where
 * the table fits that quarter, a plain scan has no ring either and the ranges cost what it costs.
 */
export function partsFor(t: { pages: number; columns: string }, serverVersionNum: number, sharedBufferPages: number): number {
  if (serverVersionNum < 140000 || !t.columns) return 1;
  if (t.pages > sharedBufferPages / 4) return 1;
  return Math.max(1, Math.ceil(t.pages / PART_PAGES));
}

export function tableStreamKey(t: { schema: string; name: string }, part = 0): string {
  return part === 0 ? `table:${JSON.stringify([t.schema, t.name])}` : `table:${JSON.stringify([t.schema, t.name, part])}`;
}

/**
 * First page of a part. The ranges are equal, so the parts of a table copied side by side (and loaded
 * side by side on restore) finish together instead of one long range running alone at the end: with
 * fixed 256 MiB boundaries pgbench's 400 MB table was split 64/36 % and its larger range ran alone for
 * a quarter of the backup. A table that grows moves every boundary a little; the repository's
 * content-defined chunks resynchronise within a chunk or two of each boundary, so that costs a few MB.
 */
export function partStart(t: { pages: number; parts: number }, part: number): number {
  return Math.floor((part * t.pages) / t.parts);
}

/**
 * The row source of one part: the whole table, or one ctid range of it (the last range is open-ended).
 * A table with char(n) columns is read through a query that drops their blank padding (`select`).
 */
export function partQuery(t: { qualified: string; columns: string; select?: string; pages: number; parts: number }, part: number): string {
  const columns = t.columns ? ` (${t.columns})` : '';
  if (t.parts <= 1) return t.select ? `(SELECT ${t.select} FROM ONLY ${t.qualified})` : `${t.qualified}${columns}`;
  const from = `ctid >= '(${partStart(t, part)},0)'::tid`;
  const to = part < t.parts - 1 ? ` AND ctid < '(${partStart(t, part + 1)},0)'::tid` : '';
  return `(SELECT ${t.select ?? t.columns} FROM ONLY ${t.qualified} WHERE ${from}${to})`;
}

export interface PgMeta {
  database: string;
  encoding: string;
  collate: string;
  ctype: string;
  owner: string;
  serverVersion: string;
  serverVersionNum: number;
  tables: TableEntry[];
  sequences: SequenceEntry[];
  roles: string[];
  largeObjects: number;
  /** Populated materialized views, dependencies first; refreshed after post-data. */
  matviews: string[];
  /** Database-wide settings ("name=value") and comment; absent in artifacts of earlier builds. */
  settings?: string[];
  comment?: string | null;
}
