// Catalog queries run inside the backup's snapshot: what to copy, sequence positions, and which roles
// the database refers to (so a restore can name the missing ones before it starts).
import type pg from 'pg';

export interface TableEntry {
  /** schema.table, each part quoted as SQL needs it. */
  qualified: string;
  schema: string;
  name: string;
  /** Comma-separated, quoted column list without generated columns (they are recomputed on load). */
  columns: string;
  /**
   * What COPY TO selects when that differs from `columns`: a char(n) value that is all blanks goes out
   * as '' (pgbench's 84-blank filler was 87 % of its table's COPY text); the load pads it back to n
   * blanks, so the stored value is the same. Absent when the table has no char(n) column.
   */
  select?: string;
  /** On-disk size at backup time, to copy the largest tables first. */
  bytes: number;
  /** Pages of the main fork: where the ctid ranges of a split table fall. */
  pages: number;
  /** How many streams the rows were split into (ctid ranges of PART_PAGES pages); 1 for most tables. */
  parts: number;
}

export interface SequenceEntry {
  qualified: string;
  lastValue: string;
  isCalled: boolean;
}

export interface DatabaseInfo {
  name: string;
  /** `ALTER DATABASE … SET` entries as the catalog keeps them ("name=value"). */
  settings: string[];
  comment: string | null;
  encoding: string;
  collate: string;
  ctype: string;
  owner: string;
  serverVersion: string;
  serverVersionNum: number;
  /** shared_buffers in pages: which tables a plain scan reads through a ring of buffers (see partsFor). */
  sharedBufferPages: number;
}

const USER_SCHEMAS = `n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'`;

// Objects that belong to an extension are recreated by CREATE EXTENSION, not copied.
const NOT_EXTENSION_MEMBER = `NOT EXISTS (SELECT 1 FROM pg_depend d
  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')`;

export async function databaseInfo(client: pg.Client): Promise<DatabaseInfo> {
  const { rows } = await client.query(`
    SELECT d.datname AS name, pg_encoding_to_char(d.encoding) AS encoding, d.datcollate AS collate,
           d.datctype AS ctype, pg_get_userbyid(d.datdba) AS owner,
           current_setting('server_version') AS server_version,
           current_setting('server_version_num')::int AS server_version_num,
           (SELECT setting::bigint FROM pg_catalog.pg_settings WHERE name = 'shared_buffers') AS shared_buffer_pages,
           coalesce((SELECT s.setconfig FROM pg_db_role_setting s WHERE s.setdatabase = d.oid AND s.setrole = 0), '{}') AS settings,
           shobj_description(d.oid, 'pg_database') AS comment
    FROM pg_database d WHERE d.datname = current_database()`);
  const r = rows[0];
  return {
    name: r.name,
    settings: r.settings,
    comment: r.comment,
    encoding: r.encoding,
    collate: r.collate,
    ctype: r.ctype,
    owner: r.owner,
    serverVersion: r.server_version,
    serverVersionNum: r.server_version_num,
    sharedBufferPages: Number(r.shared_buffer_pages),
  };
}

/** Tables that hold rows: plain and unlogged tables and leaf partitions (partitioned parents hold none). */
export async function listTables(client: pg.Client): Promise<TableEntry[]> {
  const { rows } = await client.query(`
    SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS qualified,
           n.nspname AS schema, c.relname AS name,
           (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) FROM pg_attribute a
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '') AS columns,
           (SELECT string_agg(
                     CASE WHEN a.atttypid = 'pg_catalog.bpchar'::pg_catalog.regtype AND a.atttypmod > 0
                       THEN format('CASE WHEN pg_catalog.length(%1$I) = 0 THEN ''''::pg_catalog.bpchar ELSE %1$I END AS %1$I', a.attname)
                       ELSE quote_ident(a.attname) END,
                   ', ' ORDER BY a.attnum) FROM pg_attribute a
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
             HAVING bool_or(a.atttypid = 'pg_catalog.bpchar'::pg_catalog.regtype AND a.atttypmod > 0)) AS select_list,
           pg_relation_size(c.oid) + COALESCE(pg_relation_size(NULLIF(c.reltoastrelid, 0)), 0) AS bytes,
           pg_relation_size(c.oid) / current_setting('block_size')::int AS pages
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind = 'r' AND c.relpersistence <> 't' AND ${USER_SCHEMAS} AND ${NOT_EXTENSION_MEMBER}
    ORDER BY n.nspname, c.relname`);
  return rows.map((r) => ({
    qualified: r.qualified,
    schema: r.schema,
    name: r.name,
    columns: r.columns ?? '',
    ...(r.select_list ? { select: r.select_list as string } : {}),
    bytes: Number(r.bytes),
    pages: Number(r.pages),
    parts: 1,
  }));
}

/** Every relation pg_dump will lock, so a concurrent DROP or ALTER waits for the backup instead of breaking it. */
export async function lockTables(client: pg.Client, tables: readonly string[]): Promise<void> {
  for (let i = 0; i < tables.length; i += 500) {
    await client.query(`LOCK TABLE ${tables.slice(i, i + 500).join(', ')} IN ACCESS SHARE MODE`);
  }
}

export async function partitionedParents(client: pg.Client): Promise<string[]> {
  const { rows } = await client.query(`
    SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS qualified
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind = 'p' AND ${USER_SCHEMAS} AND ${NOT_EXTENSION_MEMBER}`);
  return rows.map((r) => r.qualified as string);
}

/**
 * Sequence positions. Sequences are not transactional, so like pg_dump this reads their current state
 * right after the snapshot was pinned.
 */
export async function readSequences(client: pg.Client): Promise<SequenceEntry[]> {
  const { rows } = await client.query(`
    SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS qualified
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind = 'S' AND ${USER_SCHEMAS} AND ${NOT_EXTENSION_MEMBER}
    ORDER BY 1`);
  const out: SequenceEntry[] = [];
  for (let i = 0; i < rows.length; i += 200) {
    const batch = rows.slice(i, i + 200);
    const sql = batch
      .map((r, j) => `SELECT ${j} AS i, last_value::text AS v, is_called AS c FROM ${r.qualified as string}`)
      .join(' UNION ALL ');
    const res = await client.query(sql);
    for (const v of res.rows) out.push({ qualified: batch[v.i]!.qualified, lastValue: v.v, isCalled: v.c });
  }
  return out;
}

/** Roles that own objects in this database or appear in its privileges and policies. */
export async function referencedRoles(client: pg.Client): Promise<string[]> {
  const { rows } = await client.query(`
    WITH ids AS (
      SELECT c.relowner AS id FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE ${USER_SCHEMAS}
      UNION SELECT (aclexplode(c.relacl)).grantee FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relacl IS NOT NULL AND ${USER_SCHEMAS}
      UNION SELECT p.proowner FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE ${USER_SCHEMAS}
      UNION SELECT (aclexplode(p.proacl)).grantee FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE p.proacl IS NOT NULL AND ${USER_SCHEMAS}
      UNION SELECT t.typowner FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE ${USER_SCHEMAS}
      UNION SELECT n.nspowner FROM pg_namespace n WHERE ${USER_SCHEMAS}
      UNION SELECT (aclexplode(n.nspacl)).grantee FROM pg_namespace n WHERE n.nspacl IS NOT NULL AND ${USER_SCHEMAS}
      UNION SELECT unnest(polroles) FROM pg_policy
      UNION SELECT lomowner FROM pg_largeobject_metadata
      UNION SELECT (aclexplode(lomacl)).grantee FROM pg_largeobject_metadata WHERE lomacl IS NOT NULL
      UNION SELECT defaclrole FROM pg_default_acl
      UNION SELECT (aclexplode(defaclacl)).grantee FROM pg_default_acl
    )
    SELECT DISTINCT r.rolname FROM ids JOIN pg_roles r ON r.oid = ids.id ORDER BY 1`);
  return rows.map((r) => r.rolname as string);
}

export async function largeObjectCount(client: pg.Client): Promise<number> {
  const { rows } = await client.query('SELECT count(*)::int AS n FROM pg_largeobject_metadata');
  return rows[0].n as number;
}

/**
 * Populated materialized views. pg_dump --schema-only leaves out their REFRESH, so the restore
 * refreshes these after post-data. Ordered so a view comes after the materialized views it reads.
 */
export async function populatedMatviews(client: pg.Client): Promise<string[]> {
  const { rows } = await client.query(`
    WITH RECURSIVE mv AS (
      SELECT c.oid, quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS qualified
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind = 'm' AND c.relispopulated AND ${USER_SCHEMAS} AND ${NOT_EXTENSION_MEMBER}
    ), deps AS (
      -- matview -> other matview it selects from (through its rewrite rule)
      SELECT DISTINCT r.ev_class AS mv, d.refobjid AS uses
      FROM pg_rewrite r JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
      WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid <> r.ev_class
        AND r.ev_class IN (SELECT oid FROM mv) AND d.refobjid IN (SELECT oid FROM mv)
    ), depth AS (
      SELECT oid, 0 AS level FROM mv
      UNION ALL SELECT deps.mv, depth.level + 1 FROM depth JOIN deps ON deps.uses = depth.oid WHERE depth.level < 100
    )
    SELECT mv.qualified FROM mv JOIN depth ON depth.oid = mv.oid GROUP BY mv.qualified ORDER BY max(depth.level), 1`);
  return rows.map((r) => r.qualified as string);
}
