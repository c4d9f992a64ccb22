/**
 * Prompt templates: a team's own wording around the incident's data. `{{name}}` placeholders are filled
 * at run time; every value that comes from PagerDuty, Slack or a person is inserted JSON-encoded (quoted,
 * newlines escaped), and the whole incident with its timeline sits in one fenced data block
 * (`{{incident_data}}`, appended at the end when a template leaves it out). Unknown placeholders are a
 * start-up error naming the file and line.
 */

/** Every placeholder a template may use, and what it becomes. */
export const PLACEHOLDERS: Record<string, string> = {
  incident_id: 'PagerDuty incident ID (JSON string)',
  incident_number: 'incident number (JSON number or null)',
  title: 'incident title (JSON string)',
  service: 'service name (JSON string)',
  priority: 'priority label (JSON string or null)',
  urgency: 'urgency (JSON string or null)',
  created: 'start time, ISO 8601 UTC (JSON string or null)',
  resolved: 'resolve time, ISO 8601 UTC (JSON string or null)',
  resolved_by: 'who resolved it (JSON string or null)',
  incident_url: 'link to the incident (JSON string or null)',
  what_happened: 'description given in Slack for ad-hoc incidents (JSON string or null)',
  timeline: 'the evidence timeline, one entry per line (JSON array of strings)',
  evidence_notes: 'what evidence could not be gathered or was cut (JSON array of strings)',
  postmortem_destination: 'where the postmortem goes (from configuration, plain text)',
  incident_data: 'the fenced data block with all of the above',
  steps: 'the built-in five investigation steps (plain text)',
};

export const MAX_TEMPLATE_CHARS = 8000;

export interface PromptTemplate {
  /** Where it came from, for messages: a file path or "built-in". */
  source: string;
  text: string;
}

export class TemplateError extends Error {
  readonly code = 'template_invalid';
}

const PLACEHOLDER = /\{\{\s*([^{}]*?)\s*\}\}/g;

/** Checks a template's placeholders and size; throws TemplateError naming the file and line. */
export function parseTemplate(source: string, text: string): PromptTemplate {
  if (text.length > MAX_TEMPLATE_CHARS) {
    throw new TemplateError(
      `${source}: longer than ${MAX_TEMPLATE_CHARS} characters (the prompt has a size budget)`,
    );
  }
  const problems: string[] = [];
  for (const [i, line] of text.split('\n').entries()) {
    for (const m of line.matchAll(PLACEHOLDER)) {
      const name = m[1] ?? '';
      if (!Object.hasOwn(PLACEHOLDERS, name))
        problems.push(`${source} line ${i + 1}: unknown placeholder {{${name}}}`);
    }
  }
  if (problems.length > 0) {
    throw new TemplateError(`${problems.join('; ')} (known: ${Object.keys(PLACEHOLDERS).join(', ')})`);
  }
  return { source, text };
}

/** Fills a template. `values` holds every placeholder's final text. */
export function renderTemplate(
  template: PromptTemplate,
  values: Record<keyof typeof PLACEHOLDERS, string>,
): string {
  const rendered = template.text.replace(PLACEHOLDER, (_, name: string) => values[name] ?? '');
  return usesPlaceholder(template.text, 'incident_data')
    ? rendered
    : `${rendered.trimEnd()}\n\n${values.incident_data}`;
}

function usesPlaceholder(text: string, name: string): boolean {
  return [...text.matchAll(PLACEHOLDER)].some((m) => m[1] === name);
}

/** The built-in template: the public guide's content and five steps. */
export const BUILT_IN_TEMPLATE = parseTemplate(
  'built-in',
  [
    'A resolved incident needs a blameless postmortem. Investigate it and write one.',
    '',
    '{{incident_data}}',
    '',
    '{{steps}}',
  ].join('\n'),
);
