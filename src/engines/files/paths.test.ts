import { describe, expect, it } from 'vitest';
import { isBunkerError } from '../../core/errors.js';
import { checkEntryName, compileExcludes, mapLimit, showPath, splitRelative } from './paths.js';

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return isBunkerError(err) ? err.code : 'other';
  }
  return undefined;
}

describe('files paths', () => {
  it('refuses entry names that leave their directory', () => {
    for (const bad of ['', '.', '..', 'a/b', '../x', '/abs']) expect(code(() => checkEntryName(Buffer.from(bad), 'dir')), bad).toBe('unsafe_path');
    expect(code(() => checkEntryName(Buffer.from([0x61, 0, 0x62]), ''))).toBe('unsafe_path');
    for (const ok of ['...', '.hidden', 'a..b', 'new\nline']) expect(code(() => checkEntryName(Buffer.from(ok), ''))).toBeUndefined();
    expect(code(() => checkEntryName(Buffer.from([0xff, 0xfe]), ''))).toBeUndefined();
  });

  it('splits subset paths, refusing absolute ones and ".."', () => {
    expect(splitRelative('a//b/./c/').map(String)).toEqual(['a', 'b', 'c']);
    for (const bad of ['/etc/passwd', '../x', 'a/../../x', '.', '']) expect(code(() => splitRelative(bad)), bad).toBe('unsafe_path');
  });

  it('matches exclude patterns like gitignore', () => {
    const ex = compileExcludes(['*.tmp', 'cache/**', '/top', 'logs/?.log']);
    expect(ex('a/b/x.tmp')).toBe(true);
    expect(ex('x.tmp')).toBe(true);
    expect(ex('x.tmpl')).toBe(false);
    expect(ex('cache/a/b')).toBe(true);
    expect(ex('sub/cache/a')).toBe(false);
    expect(ex('top')).toBe(true);
    expect(ex('top/inner')).toBe(true);
    expect(ex('sub/top')).toBe(false);
    expect(ex('logs/1.log')).toBe(true);
    expect(ex('logs/10.log')).toBe(false);
    expect(compileExcludes([])('anything')).toBe(false);
  });

  it('shows non-UTF-8 names escaped', () => {
    expect(showPath(Buffer.from([0x61, 0xff]))).toBe('"a\\\\xff"');
    expect(showPath(Buffer.from('café'))).toBe('"café"');
  });

  it('bounds concurrency and keeps order', async () => {
    let active = 0;
    let peak = 0;
    const out = await mapLimit([5, 1, 4, 2, 3], 2, async (n) => {
      peak = Math.max(peak, ++active);
      await new Promise((r) => setTimeout(r, n));
      active--;
      return n * 10;
    });
    expect(out).toEqual([50, 10, 40, 20, 30]);
    expect(peak).toBe(2);
  });
});
