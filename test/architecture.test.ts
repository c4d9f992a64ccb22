import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

/** The structure the README describes, checked on the source itself. */

const SRC = join(import.meta.dirname, '..', 'src');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sourceFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

const files = sourceFiles(SRC);
const text = new Map(files.map((f) => [f, readFileSync(f, 'utf8')]));

/** Relative imports of a file (type-only ones too: a cycle of types is still a cycle), as src/ paths. */
function importsOf(file: string): string[] {
  const specifiers = [
    ...(text.get(file) ?? '').matchAll(/^(?:import|export)[^'"]*?from\s+'(\.[^']+)'/gm),
  ].map((m) => m[1] as string);
  return specifiers.map((s) => resolve(dirname(file), s.replace(/\.js$/, '.ts')));
}

const rel = (f: string) => relative(SRC, f);

describe('architecture', () => {
  it('keeps the domain free of Slack, Devin and PagerDuty code', () => {
    const domain = files.filter((f) => rel(f).startsWith('postmortems/'));
    expect(domain.length).toBeGreaterThan(10);
    const leaks = domain.flatMap((f) =>
      importsOf(f)
        .filter((i) => /^(slack|devin|pagerduty|http|app)\b/.test(rel(i)))
        .map((i) => `${rel(f)} → ${rel(i)}`),
    );
    expect(leaks).toEqual([]);
  });

  it('compares no error code as a string in the domain (codes are typed unions)', () => {
    const compared = files
      .filter((f) => rel(f).startsWith('postmortems/'))
      .flatMap((f) =>
        (text.get(f) ?? '')
          .split('\n')
          .filter((line) => /\.code\s*[!=]==?\s*['"]/.test(line))
          .map((line) => `${rel(f)}: ${line.trim()}`),
      );
    expect(compared).toEqual([]);
  });

  it('has no import cycle', () => {
    const graph = new Map(files.map((f) => [f, importsOf(f).filter((i) => text.has(i))]));
    const cycles: string[] = [];
    const state = new Map<string, 'visiting' | 'done'>();
    const visit = (f: string, path: string[]) => {
      if (state.get(f) === 'done') return;
      if (state.get(f) === 'visiting') {
        cycles.push([...path.slice(path.indexOf(f)), f].map(rel).join(' → '));
        return;
      }
      state.set(f, 'visiting');
      for (const next of graph.get(f) ?? []) visit(next, [...path, f]);
      state.set(f, 'done');
    };
    for (const f of files) visit(f, []);
    expect(cycles).toEqual([]);
  });

  it('changes run state only through the lifecycle', () => {
    const direct = files
      .filter((f) => !rel(f).startsWith('store/') && rel(f) !== 'postmortems/lifecycle.ts')
      .filter((f) =>
        /\.(transitionRun|openRun|transitionGatedRun|openGatedRun|openOrJoinStorm|moveStormMembers)\(|store\.admitQueued\(/.test(
          text.get(f) ?? '',
        ),
      )
      .map(rel);
    expect(direct).toEqual([]);
  });
});
