// The artifact layout this engine writes (format 1): stream keys and the meta record a restore reads.
import type { SequenceEntry, TableEntry } from './catalog.js';

export const FORMAT = 1;
export const SCHEMA_STREAM = 'schema';
export const LARGE_OBJECTS_STREAM = 'large-objects';

/**
 * A table above this many pages (256 MiB of 8 KiB pages) is copied as several ctid ranges in parallel,
 * one stream each. Boundaries sit at fixed multiples, so when the table grows only its last part and
 * the new ones change, and the rest still deduplicates. Each range scan costs the server more than a
 * share of one plain scan: for pgbench's 400 MB table, 7 ranges of 64 MiB took 1.16-1.34 s of server
 * CPU and 2 ranges of 256 MiB 1.05-1.09 s (0.93-1.06 s unsplit), so ranges are only as many as it
 * takes to spread a big table over a few cores.
 */
export const PART_PAGES = 32768;

/** Needs TID range scans (PostgreSQL 14+) to split; a table without columns is never split. */
export function partsFor(t: { pages: number; columns: string }, serverVersionNum: number): number {
  if (serverVersionNum < 140000 || !t.columns) return 1;
  return Math.max(1, Math.ceil(t.pages / PART_PAGES));
}

export function tableStreamKey(t: { schema: string; name: string }, part = 0): string {
  return part === 0 ? `table:${JSON.stringify([t.schema, t.name])}` : `table:${JSON.stringify([t.schema, t.name, part])}`;
}

/** The row source of one part: the whole table, or one ctid range of it (the last range is open-ended). */
export function partQuery(t: { qualified: string; columns: string; parts: number }, part: number): string {
  const columns = t.columns ? ` (${t.columns})` : '';
  if (t.parts <= 1) return `${t.qualified}${columns}`;
  const from = `ctid >= '(${part * PART_PAGES},0)'::tid`;
  const to = part < t.parts - 1 ? ` AND ctid < '(${(part + 1) * PART_PAGES},0)'::tid` : '';
  return `(SELECT ${t.columns} FROM ONLY ${t.qualified} WHERE ${from}${to})`;
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
