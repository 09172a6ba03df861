import { describe, expect, it } from 'vitest';
import { formatBytes, formatDate, renderRows, selectColumns, type Column } from './output.js';

interface Row { name: string; n: number }
const columns: Column<Row>[] = [
  { key: 'name', header: 'Name', text: (r) => r.name },
  { key: 'n', header: 'Count', text: (r) => `${r.n} items`, value: (r) => r.n },
];
const rows: Row[] = [{ name: 'a,"b"', n: 1 }, { name: 'tab\there', n: 22 }];

describe('output', () => {
  it('renders every format', () => {
    expect(renderRows(rows, columns, 'csv')).toBe('Name,Count\n"a,""b""",1\ntab\there,22\n');
    expect(renderRows(rows, columns, 'tsv', { header: false })).toBe('a,"b"\t1\ntab here\t22\n');
    expect(JSON.parse(renderRows(rows, columns, 'json'))).toEqual([{ name: 'a,"b"', n: 1 }, { name: 'tab\there', n: 22 }]);
    const table = renderRows([{ name: 'x', n: 3 }], columns, 'table').split('\n');
    expect(table).toEqual(['+------+---------+', '| Name | Count   |', '+------+---------+', '| x    | 3 items |', '+------+---------+', '']);
  });

  it('selects columns by key or header, case-insensitively, and refuses unknown ones', () => {
    expect(selectColumns(columns, ['name'], ['COUNT,name']).map((c) => c.key)).toEqual(['n', 'name']);
    expect(selectColumns(columns, ['name'], undefined).map((c) => c.key)).toEqual(['name']);
    expect(() => selectColumns(columns, ['name'], ['size'])).toThrow(/unknown column "size"/);
  });

  it('formats dates with PHP date() letters and sizes in binary units', () => {
    const iso = '2026-03-04T05:06:07.000Z';
    expect(formatDate(iso)).toBe('2026-03-04T05:06:07+00:00');
    expect(formatDate(iso, 'Y-m-d H:i:s')).toBe('2026-03-04 05:06:07');
    expect(formatDate(iso, 'D, j M y G\\h')).toBe('Wed, 4 Mar 26 5h');
    expect(formatDate(iso, 'U')).toBe(String(Date.parse(iso) / 1000));
    expect(formatDate(null)).toBe('');
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(1536)).toBe('1.50 KiB');
    expect(formatBytes(5 * 1024 ** 3)).toBe('5.00 GiB');
  });
});
