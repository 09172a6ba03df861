// bunker.yaml: finding it, parsing it and validating it. Each service and mount entry is validated by
// its engine's own configSchema, so adding an engine never touches this file.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { parseDocument, YAMLParseError } from 'yaml';
import { z } from 'zod';
import { BunkerError } from '../core/errors.js';
import { ENGINES, findEngine } from '../engines/registry.js';

export const CONFIG_FILE = 'bunker.yaml';

export type EnvironmentType = 'production' | 'staging' | 'development';

/** One service or mount, validated by its engine. `config` is what the engine's configSchema returned. */
export interface UnitConfig {
  name: string;
  /** Canonical engine type (aliases resolved). */
  type: string;
  kind: 'service' | 'mount';
  config: unknown;
}

export interface EnvironmentConfig {
  name: string;
  type: EnvironmentType;
  services: Record<string, UnitConfig>;
  mounts: Record<string, UnitConfig>;
  gateway?: { listen: string; upstream: string };
  hooks: { post_restore?: string };
}

export interface StorageLocation {
  name: string;
  url: string;
}

export interface ProjectConfig {
  /** Absolute path of bunker.yaml. */
  file: string;
  /** Folder of bunker.yaml: relative paths are relative to it. */
  dir: string;
  project: string;
  /** Absolute state dir (catalog, locks, caches). */
  stateDir: string;
  storage: { locations: StorageLocation[]; passwordFile?: string };
  environments: Record<string, EnvironmentConfig>;
}

const NAME = /^[a-z0-9][a-z0-9_-]*$/i;
const nameKey = z.string().regex(NAME, 'use letters, digits, "-" and "_", starting with a letter or digit');

const unitEntry = z.record(z.string(), z.unknown());

const environmentSchema = z.strictObject({
  type: z.enum(['production', 'staging', 'development']).default('development'),
  services: z.record(nameKey, unitEntry).default({}),
  mounts: z.record(nameKey, unitEntry).default({}),
  gateway: z
    .strictObject({
      listen: z.string().regex(/^[^\s:]*:\d+$/, 'expected host:port, e.g. "127.0.0.1:8080"'),
      upstream: z.url({ protocol: /^https?$/, error: 'expected an http:// or https:// URL' }),
    })
    .optional(),
  hooks: z.strictObject({ post_restore: z.string().min(1).optional() }).default({}),
});

const configSchema = z.strictObject({
  project: nameKey,
  state_dir: z.string().min(1).default('.bunker'),
  storage: z
    .strictObject({
      locations: z
        .array(z.strictObject({ name: nameKey, url: z.string().min(1) }))
        .min(1, 'give at least one storage location'),
      password_file: z.string().min(1).optional(),
    })
    .default({ locations: [{ name: 'local', url: 'file:.bunker/storage' }] }),
  environments: z.record(nameKey, environmentSchema).refine((envs) => Object.keys(envs).length > 0, {
    message: 'declare at least one environment',
  }),
});

/** Finds bunker.yaml: --config, then BUNKER_CONFIG, then the nearest one in `cwd` or above. */
export function locateConfig(explicit: string | undefined, cwd: string = process.cwd()): string {
  const given = explicit ?? process.env.BUNKER_CONFIG;
  if (given) {
    const file = resolve(cwd, given);
    const target = existsSync(file) && statSync(file).isDirectory() ? join(file, CONFIG_FILE) : file;
    if (!existsSync(target)) {
      throw new BunkerError('config_not_found', `config file ${target} does not exist`, {
        hint: explicit ? 'Check the --config path.' : 'Check the BUNKER_CONFIG variable.',
      });
    }
    return target;
  }
  for (let dir = resolve(cwd); ; dir = dirname(dir)) {
    const candidate = join(dir, CONFIG_FILE);
    if (existsSync(candidate)) return candidate;
    if (dirname(dir) === dir) break;
  }
  throw new BunkerError('config_not_found', `no ${CONFIG_FILE} in ${resolve(cwd)} or any folder above it`, {
    hint: 'Run bunker in a project folder, pass --config FILE, or try `bunker quickstart` for a sample project.',
  });
}

export function loadConfig(file: string): ProjectConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new BunkerError('config_not_found', `cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
  return parseConfig(text, file);
}

/** Parses and validates the text of a bunker.yaml that lives at `file`. */
export function parseConfig(text: string, file: string): ProjectConfig {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  const yamlError = doc.errors[0];
  if (yamlError) throw yamlErrorToBunker(yamlError, file);
  const raw: unknown = doc.toJS() ?? {};

  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) throw schemaError(parsed.error.issues, file);
  const data = parsed.data;
  const dir = dirname(resolve(file));

  const environments: Record<string, EnvironmentConfig> = {};
  for (const [envName, env] of Object.entries(data.environments)) {
    const services: Record<string, UnitConfig> = {};
    const mounts: Record<string, UnitConfig> = {};
    for (const [name, entry] of Object.entries(env.services)) {
      services[name] = validateUnit(file, ['environments', envName, 'services', name], name, entry, 'service');
    }
    for (const [name, entry] of Object.entries(env.mounts)) {
      if (services[name]) {
        throw configError(file, ['environments', envName, 'mounts', name], `"${name}" is already a service name; names must be unique within an environment`);
      }
      mounts[name] = validateUnit(file, ['environments', envName, 'mounts', name], name, { type: 'files', ...entry }, 'mount');
    }
    environments[envName] = {
      name: envName,
      type: env.type,
      services,
      mounts,
      ...(env.gateway ? { gateway: env.gateway } : {}),
      hooks: env.hooks,
    };
  }

  return {
    file: resolve(file),
    dir,
    project: data.project,
    stateDir: resolvePath(dir, data.state_dir),
    storage: {
      locations: data.storage.locations,
      ...(data.storage.password_file ? { passwordFile: resolvePath(dir, data.storage.password_file) } : {}),
    },
    environments,
  };
}

function validateUnit(
  file: string,
  path: string[],
  name: string,
  entry: Record<string, unknown>,
  kind: 'service' | 'mount',
): UnitConfig {
  const { type, ...rest } = entry;
  if (typeof type !== 'string' || type === '') {
    const known = ENGINES.filter((e) => e.kind === kind).map((e) => e.type).join(', ');
    throw configError(file, [...path, 'type'], `missing service type; use one of: ${known}`);
  }
  const engine = findEngine(type);
  if (!engine || engine.kind !== kind) {
    const known = ENGINES.filter((e) => e.kind === kind).map((e) => e.type).join(', ');
    throw configError(file, [...path, 'type'], `unknown ${kind} type "${type}"; known types: ${known}`);
  }
  const result = engine.configSchema(z).safeParse(rest);
  if (!result.success) throw schemaError(result.error.issues, file, path);
  return { name, type: engine.type, kind, config: result.data };
}

function resolvePath(dir: string, path: string): string {
  return isAbsolute(path) ? path : resolve(dir, path);
}

function formatPath(path: readonly PropertyKey[]): string {
  return path.map((p) => (typeof p === 'number' ? `[${p}]` : String(p))).join('.').replace(/\.\[/g, '[');
}

function configError(file: string, path: readonly PropertyKey[], message: string): BunkerError {
  return new BunkerError('config_invalid', `${formatPath(path)}: ${message}`, {
    hint: `Fix ${file} and run the command again.`,
    details: { file, path: formatPath(path) },
  });
}

function schemaError(issues: readonly z.core.$ZodIssue[], file: string, prefix: readonly PropertyKey[] = []): BunkerError {
  const first = issues[0];
  if (!first) return configError(file, prefix, 'invalid');
  let path = [...prefix, ...first.path];
  let message = first.message;
  if (first.code === 'unrecognized_keys') {
    path = [...path, ...first.keys.slice(0, 1)];
    message = `unknown key "${first.keys[0]}"`;
  } else if (first.code === 'invalid_type' && message.includes('received undefined')) {
    message = 'required';
  }
  const error = configError(file, path, message);
  if (issues.length > 1) error.message += ` (and ${issues.length - 1} more problem${issues.length > 2 ? 's' : ''})`;
  return error;
}

function yamlErrorToBunker(error: YAMLParseError, file: string): BunkerError {
  const pos = error.linePos?.[0];
  const where = pos ? `${file}:${pos.line}:${pos.col}` : file;
  const reason = error.message.split('\n')[0]?.replace(/ at line \d+, column \d+:?.*$/, '') ?? error.message;
  return new BunkerError('config_invalid', `${where}: malformed YAML: ${reason}`, {
    hint: pos ? `Fix line ${pos.line} of ${file}.` : `Fix ${file}.`,
    details: { file, ...(pos ? { line: pos.line, column: pos.col } : {}) },
  });
}
