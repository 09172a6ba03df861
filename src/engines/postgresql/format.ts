// The artifact layout this engine writes (format 1): stream keys and the meta record a restore reads.
import type { SequenceEntry, TableEntry } from './catalog.js';

export const FORMAT = 1;
export const SCHEMA_STREAM = 'schema';
export const LARGE_OBJECTS_STREAM = 'large-objects';

export function tableStreamKey(t: { schema: string; name: string }): string {
  return `table:${JSON.stringify([t.schema, t.name])}`;
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
}
