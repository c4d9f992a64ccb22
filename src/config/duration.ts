/** Durations in configuration: a number and a unit, e.g. 90s, 30m, 24h, 7d. */
const UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

export function parseDuration(text: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$/.exec(text);
  if (!m?.[1] || !m[2]) return undefined;
  const ms = Number(m[1]) * (UNITS[m[2]] ?? 0);
  return ms > 0 ? Math.round(ms) : undefined;
}

export function formatDurationSetting(ms: number): string {
  for (const [unit, size] of [
    ['d', UNITS.d],
    ['h', UNITS.h],
    ['m', UNITS.m],
  ] as const) {
    if (size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${Math.round(ms / 1000)}s`;
}
