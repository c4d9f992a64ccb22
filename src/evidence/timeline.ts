/**
 * The incident's timeline as Devin reads it: one line per thing that happened, oldest first, in UTC,
 * each cut to one short line, the whole within a character budget. What does not fit is cut from the
 * middle (the start and the end of an incident matter most) and the cut is said in a line of its own.
 */

export interface TimelineEntry {
  /** ISO 8601 time; entries without a readable time are dropped. */
  at: string;
  /** Where it comes from, e.g. "PagerDuty trigger", "PagerDuty note", "Slack #inc-4711". */
  source: string;
  text: string;
}

export const MAX_LINE_CHARS = 300;

export function formatEntry(e: TimelineEntry): string {
  const when = new Date(e.at).toISOString().replace('.000Z', 'Z');
  const text = e.text.replace(/\s+/g, ' ').trim();
  const line = `${when} ${e.source}: ${text}`;
  return line.length > MAX_LINE_CHARS ? `${line.slice(0, MAX_LINE_CHARS - 1)}…` : line;
}

export function buildTimeline(entries: readonly TimelineEntry[], budgetChars: number): string[] {
  const lines = entries
    .filter((e) => !Number.isNaN(Date.parse(e.at)))
    .map((e, i) => ({ t: Date.parse(e.at), i, line: formatEntry(e) }))
    .sort((a, b) => a.t - b.t || a.i - b.i)
    .map((x) => x.line);
  return cutMiddle(lines, budgetChars);
}

/** Keeps the timeline's first and last lines within `budgetChars`, with one line saying what was left out. */
export function cutMiddle(input: readonly string[], budgetChars: number): string[] {
  // A line left by an earlier cut is dropped: the new note counts everything left out.
  const earlier = input.find((l) => l.startsWith('['));
  const earlierCut = earlier ? Number(/^\[(\d+) /.exec(earlier)?.[1] ?? 0) : 0;
  const lines = input.filter((l) => l !== earlier);
  const size = (ls: readonly string[]) => ls.reduce((n, l) => n + l.length + 1, 0);
  if (size(input) <= budgetChars) return [...input];

  // Keep as many lines from both ends as fit, leaving room for the note saying what was cut.
  const noteRoom = 160; // the note below is at most ~135 characters
  let head = 0;
  let tail = 0;
  let used = noteRoom;
  while (head + tail < lines.length) {
    const takeHead = head <= tail;
    const next = takeHead ? lines[head] : lines[lines.length - 1 - tail];
    if (!next || used + next.length + 1 > budgetChars) break;
    used += next.length + 1;
    if (takeHead) head++;
    else tail++;
  }
  const cut = lines.length - head - tail + earlierCut;
  const from = lines[head]?.slice(0, 20) ?? '';
  const to = lines[lines.length - 1 - tail]?.slice(0, 20) ?? '';
  return [
    ...lines.slice(0, head),
    `[${cut} timeline entries from ${from} to ${to} were left out to keep the prompt within its size budget]`,
    ...lines.slice(lines.length - tail),
  ];
}
