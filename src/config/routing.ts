import { dirname, resolve } from 'node:path';
import { z } from 'zod';
import { type PromptTemplate, parseTemplate } from '../postmortems/template.js';

/**
 * The routing file maps a PagerDuty service (by ID or by name) to where and how its postmortems run.
 * JSON, so it needs no extra parser; unknown keys are errors so that typos do not silently do nothing.
 */
const serviceRouteSchema = z.strictObject({
  channel: z
    .string()
    .regex(/^[CG][A-Z0-9]{4,}$/, 'expected a Slack channel ID such as C0123456789')
    .optional(),
  /** `channel` is dedicated to this service's incidents: SLACK_INCLUDE_CHANNEL_HISTORY may read it. */
  include_channel_history: z.boolean().optional(),
  auto_start_priorities: z.array(z.string().min(1)).optional(),
  never_priorities: z.array(z.string().min(1)).optional(),
  playbook_id: z.string().min(1).optional(),
  knowledge_ids: z.array(z.string().min(1)).optional(),
  repos: z.array(z.string().regex(/^[\w.-]+\/[\w.-]+$/, 'expected owner/name')).optional(),
  prompt_template: z.string().min(1).optional(),
  postmortem_destination: z.string().min(1).max(500).optional(),
});

const routingSchema = z.strictObject({
  services: z.record(z.string().min(1), serviceRouteSchema),
});

export interface ServiceRoute {
  channel?: string | undefined;
  /** `channel` is dedicated to this service's incidents, so its history may go into the evidence. */
  includeChannelHistory?: boolean | undefined;
  autoStartPriorities?: string[] | undefined;
  /** Priorities that get no postmortem and no message at all. */
  neverPriorities?: string[] | undefined;
  playbookId?: string | undefined;
  knowledgeIds?: string[] | undefined;
  repos?: string[] | undefined;
  template?: PromptTemplate | undefined;
  destination?: string | undefined;
}

export interface Routing {
  /** Keyed by PagerDuty service ID or service name, exactly as written in the file. */
  services: Record<string, ServiceRoute>;
}

export class RoutingFileError extends Error {
  readonly code = 'routing_invalid';
}

/** `readFile` reads template files named in the routing file, relative to the routing file's folder. */
export function parseRoutingFile(
  path: string,
  text: string,
  readFile: (path: string) => string = () => '',
): Routing {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new RoutingFileError(`${path} is not valid JSON (${(err as Error).message})`);
  }
  const parsed = routingSchema.safeParse(json);
  if (!parsed.success) {
    const details = parsed.error.issues.map(
      (i) => `${i.path.map(String).join('.') || '(top level)'}: ${i.message}`,
    );
    throw new RoutingFileError(`${path}: ${details.join('; ')}`);
  }
  const services: Record<string, ServiceRoute> = {};
  for (const [key, r] of Object.entries(parsed.data.services)) {
    if (r.include_channel_history && !r.channel) {
      throw new RoutingFileError(
        `${path}: services.${key}.include_channel_history: needs the service’s own "channel" (the one dedicated to its incidents)`,
      );
    }
    let template: PromptTemplate | undefined;
    if (r.prompt_template) {
      const file = resolve(dirname(path), r.prompt_template);
      let content: string;
      try {
        content = readFile(file);
      } catch (err) {
        throw new RoutingFileError(
          `${path}: services.${key}.prompt_template: cannot read ${file} (${(err as Error).message})`,
        );
      }
      try {
        template = parseTemplate(file, content);
      } catch (err) {
        throw new RoutingFileError(`${path}: services.${key}.prompt_template: ${(err as Error).message}`);
      }
    }
    services[key] = {
      channel: r.channel,
      includeChannelHistory: r.include_channel_history,
      autoStartPriorities: r.auto_start_priorities,
      neverPriorities: r.never_priorities,
      playbookId: r.playbook_id,
      knowledgeIds: r.knowledge_ids,
      repos: r.repos,
      template,
      destination: r.postmortem_destination,
    };
  }
  return { services };
}

/** PagerDuty object IDs: P and six capitals or digits (PF9KMXH). */
const SERVICE_ID = /^P[A-Z0-9]{6}$/;

/**
 * A service's route: by ID first (stable), then by name (readable). A service known only by a name a
 * person typed (`id` undefined: an ad-hoc incident) matches names only: typing another service's ID
 * must not pick up that service's channel, playbook or repositories.
 */
export function routeFor(routing: Routing, service: { id: string | undefined; name: string }): ServiceRoute {
  if (service.id === undefined) {
    return SERVICE_ID.test(service.name) ? {} : (routing.services[service.name] ?? {});
  }
  return routing.services[service.id] ?? routing.services[service.name] ?? {};
}
