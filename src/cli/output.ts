// Rendering rows for the terminal and for scripts: table | csv | tsv | plain | json, dates, sizes.
import { BunkerError } from '../core/errors.js';

export const FORMATS = ['table', 'csv', 'tsv', 'plain', 'json'] as const;
export type Format = (typeof FORMATS)[number];

export interface Column<R> {
  /** Key used by -c/--columns (case-insensitive) and in json output. */
  key: string;
  header: string;
  /** Human text (table, plain). */
  text(row: R): string;
  /** Machine value (csv, tsv, json); defaults to text. */
  value?(row: R): string | number | boolean | null;
}

export function parseFormat(value: string | undefined, allowed: readonly string[] = FORMATS): string {
  const format = (value ?? allowed[0]!).toLowerCase();
  if (!allowed.includes(format)) {
    throw new BunkerError('usage', `unknown format "${value}"`, { hint: `Use one of: ${allowed.join(', ')}.` });
  }
  return format;
}

/** Picks columns by -c (comma-separated keys or headers, repeatable); defaults when none. */
export function selectColumns<R>(all: Column<R>[], defaults: string[], requested: string[] | undefined): Column<R>[] {
  const wanted = requested?.length ? requested.flatMap((c) => c.split(',')).map((c) => c.trim()).filter(Boolean) : defaults;
  return wanted.map((name) => {
    const norm = name.toLowerCase().replace(/[\s_-]/g, '');
    const column = all.find((c) => c.key.toLowerCase().replace(/[\s_-]/g, '') === norm || c.header.toLowerCase().replace(/[\s_-]/g, '') === norm);
    if (!column) {
      throw new BunkerError('usage', `unknown column "${name}"`, { hint: `Available columns: ${all.map((c) => c.key).join(', ')}.` });
    }
    return column;
  });
}

export function renderRows<R>(rows: R[], columns: Column<R>[], format: Format, options: { header?: boolean } = {}): string {
  const header = options.header !== false;
  const machine = (c: Column<R>, r: R) => (c.value ? c.value(r) : c.text(r));
  switch (format) {
    case 'json':
      return (
        JSON.stringify(
          rows.map((r) => Object.fromEntries(columns.map((c) => [c.key, machine(c, r)]))),
          null,
          2,
        ) + '\n'
      );
    case 'csv':
    case 'tsv': {
      const sep = format === 'csv' ? ',' : '\t';
      const cell = (v: string | number | boolean | null) => {
        const s = v === null ? '' : String(v);
        if (format === 'tsv') return s.replace(/[\t\n\r]/g, ' ');
        return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
      };
      const lines = rows.map((r) => columns.map((c) => cell(machine(c, r))).join(sep));
      if (header) lines.unshift(columns.map((c) => cell(c.header)).join(sep));
      return lines.map((l) => l + '\n').join('');
    }
    case 'plain': {
      const lines = rows.map((r) => columns.map((c) => c.text(r)).join('\t'));
      if (header) lines.unshift(columns.map((c) => c.header).join('\t'));
      return lines.map((l) => l + '\n').join('');
    }
    case 'table': {
      const cells = rows.map((r) => columns.map((c) => c.text(r)));
      const widths = columns.map((c, i) => Math.max(header ? c.header.length : 0, ...cells.map((row) => row[i]!.length)));
      const rule = '+' + widths.map((w) => '-'.repeat(w + 2)).join('+') + '+\n';
      const line = (values: string[]) => '| ' + values.map((v, i) => v.padEnd(widths[i]!)).join(' | ') + ' |\n';
      let out = rule;
      if (header) out += line(columns.map((c) => c.header)) + rule;
      for (const row of cells) out += line(row);
      return out + rule;
    }
  }
}

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = -1;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(value < 10 ? 2 : value < 100 ? 1 : 0)} ${units[unit]}`;
}

const pad = (n: number, width = 2) => String(n).padStart(width, '0');
const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/**
 * Formats a date (in UTC) with PHP date() letters, as the Platform.sh CLI's --date-fmt does:
 * Y y m n d j H G i s D M c U T P; a backslash escapes the next character; others are copied.
 */
export function formatDate(iso: string | null, format = 'c'): string {
  if (!iso) return '';
  const d = new Date(iso);
  let out = '';
  for (let i = 0; i < format.length; i++) {
    const ch = format[i]!;
    switch (ch) {
      case 'Y': out += d.getUTCFullYear(); break;
      case 'y': out += pad(d.getUTCFullYear() % 100); break;
      case 'm': out += pad(d.getUTCMonth() + 1); break;
      case 'n': out += d.getUTCMonth() + 1; break;
      case 'd': out += pad(d.getUTCDate()); break;
      case 'j': out += d.getUTCDate(); break;
      case 'H': out += pad(d.getUTCHours()); break;
      case 'G': out += d.getUTCHours(); break;
      case 'i': out += pad(d.getUTCMinutes()); break;
      case 's': out += pad(d.getUTCSeconds()); break;
      case 'D': out += DAYS[d.getUTCDay()]; break;
      case 'M': out += MONTHS[d.getUTCMonth()]; break;
      case 'U': out += Math.floor(d.getTime() / 1000); break;
      case 'T': out += 'UTC'; break;
      case 'P': out += '+00:00'; break;
      case 'c': out += d.toISOString().slice(0, 19) + '+00:00'; break;
      case '\\': out += format[++i] ?? ''; break;
      default: out += ch;
    }
  }
  return out;
}

export function yesNo(flag: number | boolean): string {
  return flag ? 'true' : 'false';
}
