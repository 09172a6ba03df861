// Helpers for the PostgreSQL engine tests: scratch databases on the real server, a fingerprint that
// two databases share only when their schema, rows, sequence positions and large objects are equal,
// and a one-call backup/restore through the engine contract.
import { z } from 'zod';
import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createHash, randomBytes } from 'node:crypto';
import pg from 'pg';
import { createLogger, type Logger } from '../../src/core/log.js';
import { runBackup, runRestore, type BackupContext, type Engine } from '../../src/engines/engine.js';
import { postgresqlEngine } from '../../src/engines/postgresql/index.js';
import type { RepoReader, ServiceArtifact } from '../../src/repo/types.js';

const run = promisify(execFile);
export const PG_BASE = 'postgresql://postgres@127.0.0.1:5432';
export const TOOL_ENV = { ...process.env, PGHOST: '127.0.0.1', PGPORT: '5432', PGUSER: 'postgres' };

export function uniqueDb(prefix: string): string {
  return `bt_pg_${prefix}_${randomBytes(4).toString('hex')}`;
}

export async function withClient<T>(db: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: `${PG_BASE}/${encodeURIComponent(db)}` });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

export const sql = (db: string, text: string) => withClient(db, (c) => c.query(text));

export async function createDb(name: string): Promise<void> {
  await sql('postgres', `CREATE DATABASE "${name.replace(/"/g, '""')}"`);
}

export async function dropDb(name: string): Promise<void> {
  await sql('postgres', `DROP DATABASE IF EXISTS "${name.replace(/"/g, '""')}" WITH (FORCE)`);
}

export async function psqlFile(db: string, file: string): Promise<void> {
  await run('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', db, '-f', file], { env: TOOL_ENV, maxBuffer: 64 << 20 });
}

/** What must survive a round trip. Table rows are hashed in a fixed order, so only content counts. */
export interface Fingerprint {
  schema: string;
  tables: Record<string, string>;
  sequences: Record<string, string>;
  largeObjects: Record<string, string>;
}

export async function fingerprint(db: string): Promise<Fingerprint> {
  const { stdout } = await run('pg_dump', ['--schema-only', '-d', db], { env: TOOL_ENV, maxBuffer: 64 << 20 });
  // pg_dump 15.14+ brackets its output with a random \restrict key; it differs on every run.
  const schema = stdout
    .split('\n')
    .filter((l) => !/^\\(un)?restrict /.test(l))
    .join('\n');
  return withClient(db, async (c) => {
    const tables: Record<string, string> = {};
    const rels = await c.query(`
      SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS q, c.relispopulated AS populated FROM pg_class c
      JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind IN ('r', 'p', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
        AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1`);
    for (const { q, populated } of rels.rows) {
      if (!populated) {
        tables[q] = 'not populated';
        continue;
      }
      const r = await c.query(
        `SELECT count(*)::int AS n, md5(coalesce(string_agg(md5(t::text), ',' ORDER BY md5(t::text)), '')) AS h FROM ${q} t`,
      );
      tables[q] = `${r.rows[0].n}:${r.rows[0].h}`;
    }
    const sequences: Record<string, string> = {};
    const seqs = await c.query(`
      SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS q FROM pg_class c
      JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'S' ORDER BY 1`);
    for (const { q } of seqs.rows) {
      const r = await c.query(`SELECT last_value::text AS v, is_called FROM ${q}`);
      sequences[q] = `${r.rows[0].v}/${r.rows[0].is_called}`;
    }
    const largeObjects: Record<string, string> = {};
    const los = await c.query(
      `SELECT m.oid::text AS oid, md5(lo_get(m.oid)) AS h, pg_get_userbyid(m.lomowner) AS owner,
              obj_description(m.oid, 'pg_largeobject') AS comment
       FROM pg_largeobject_metadata m ORDER BY m.oid`,
    );
    for (const r of los.rows) largeObjects[r.oid] = `${r.h}/${r.owner}/${r.comment ?? ''}`;
    return { schema, tables, sequences, largeObjects };
  });
}

export function testLogger(lines?: string[]): Logger {
  return createLogger((level, line) => lines?.push(`${level}: ${line}`), 'debug');
}

export function engineFor(db: string, extra: Record<string, unknown> = {}, log: Logger = testLogger()): Engine {
  const config = postgresqlEngine.configSchema(z).parse({ url: `${PG_BASE}/${db}`, ...extra });
  const stateDir = mkdtempSync(join(tmpdir(), 'bunker-pg-state-'));
  return postgresqlEngine.create('db', config, { configDir: stateDir, stateDir, log });
}

export async function backup(engine: Engine, repo: BackupContext['repo'], log: Logger = testLogger()): Promise<ServiceArtifact> {
  const session = await engine.openBackup({
    repo,
    log,
    progress: () => {},
    signal: new AbortController().signal,
    mode: 'live',
  });
  return runBackup(session);
}

export async function restore(engine: Engine, repo: RepoReader, artifact: ServiceArtifact, log: Logger = testLogger()): Promise<void> {
  const session = await engine.openRestore({ repo, log, progress: () => {}, signal: new AbortController().signal, options: {} }, artifact);
  await runRestore(session);
}

export function hashOf(value: unknown): string {
  return createHash('sha256').update(JSON.stringify(value)).digest('hex');
}
