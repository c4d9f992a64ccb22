import { randomInt } from 'node:crypto';
import type { IncidentRecords, RestIncident } from './stand-ins/fake-pagerduty.js';

/** The demo's small world: one channel, two people, and the incidents the page can fire. */

export interface Person {
  id: string;
  name: string;
  /** Listed in the bot's SLACK_APPROVERS. */
  approver: boolean;
  /** The same person's PagerDuty user ID. */
  pagerdutyId: string;
}

export const PEOPLE: readonly Person[] = [
  { id: 'UADA0001', name: 'Ada Lovelace', approver: true, pagerdutyId: 'PADA001' },
  { id: 'USAM0002', name: 'Sam Rivera', approver: false, pagerdutyId: 'PSAM002' },
];

export const CHANNEL = { id: 'C0INCIDENTS', name: 'incidents' } as const;

/** What Devin's structured output says when the session finishes (the bot's result schema). */
export interface PostmortemOutput {
  summary: string;
  root_cause: string;
  impact: string;
  action_items: { title: string; owner?: string }[];
}

export type ScenarioKind = 'p1' | 'p3' | 'p5' | 'early' | 'storm';

export interface Scenario {
  kind: ScenarioKind;
  /** The button on the page. */
  label: string;
  /** What the page says will happen, and why (the demo's configuration). */
  expect: string;
  priority: string;
  title: string;
  service: { id: string; name: string };
  /** How long the incident was open before it resolved (or was acknowledged, for `early`). */
  minutesOpen: number;
  /** `early` stops at acknowledged: the page then offers Resolve. */
  until: 'resolved' | 'acknowledged';
  /** A storm: this many incidents of the one service, `{n}` in the title numbering them (default 1). */
  count?: number;
  alert: string;
  change: string;
  notes: string[];
  result: PostmortemOutput;
}

export const SCENARIOS: Record<ScenarioKind, Scenario> = {
  p1: {
    kind: 'p1',
    label: 'P1 resolved',
    expect: 'P1 is in AUTO_START_PRIORITIES: the Devin session starts by itself and the channel is told.',
    priority: 'P1',
    title: 'Checkout API returning 502s',
    service: { id: 'PCHKOUT', name: 'Checkout API' },
    minutesOpen: 38,
    until: 'resolved',
    alert: 'checkout-api 5xx rate above 5% for 5 minutes',
    change: 'Deploy checkout-api v2024.11.3 (connection pool settings)',
    notes: [
      'Rolled back checkout-api to v2024.11.2; 5xx rate dropping.',
      'Error rate back to baseline, watching for 10 minutes.',
    ],
    result: {
      summary:
        'A deploy lowered the checkout API’s upstream connection pool from 100 to 10. Under the morning peak, requests queued behind the pool and the load balancer answered 502 until the deploy was rolled back.',
      root_cause:
        'The pool size moved into a shared config file in v2024.11.3 and picked up the staging value. Nothing checks pool sizes per environment.',
      impact: 'About 4% of checkout attempts failed for 31 minutes; no orders were lost or charged twice.',
      action_items: [
        { title: 'Validate connection pool sizes per environment in CI', owner: 'platform' },
        { title: 'Alert on pool saturation before the 5xx alert fires', owner: 'checkout' },
        { title: 'Canary checkout deploys during the morning peak', owner: 'release' },
      ],
    },
  },
  p3: {
    kind: 'p3',
    label: 'P3 resolved',
    expect: 'P3 is not in AUTO_START_PRIORITIES: the bot asks the channel first, with Approve and Skip.',
    priority: 'P3',
    title: 'Search results stale for EU users',
    service: { id: 'PSEARCH', name: 'Search API' },
    minutesOpen: 95,
    until: 'resolved',
    alert: 'search-indexer-eu lag above 30 minutes',
    change: 'Schema migration 0142 on the catalogue database',
    notes: ['The EU indexer is stuck on one document; skipping it unblocks the queue.'],
    result: {
      summary:
        'The EU search indexer stopped on a catalogue document it could not parse after a schema migration, so EU search served results up to 80 minutes old.',
      root_cause:
        'Migration 0142 added a nullable field the indexer treats as required; it retried the same document forever instead of setting it aside.',
      impact:
        'EU users saw stale prices and availability in search for 80 minutes; checkout showed the right prices.',
      action_items: [
        { title: 'Dead-letter documents the indexer cannot parse', owner: 'search' },
        { title: 'Run the indexer against migrations in staging before release', owner: 'search' },
      ],
    },
  },
  p5: {
    kind: 'p5',
    label: 'P5 resolved',
    expect: 'P5 is in NEVER_PRIORITIES: the bot records the event and posts nothing. Watch the bot log.',
    priority: 'P5',
    title: 'Nightly report job ran 20 minutes late',
    service: { id: 'PREPORT', name: 'Reporting' },
    minutesOpen: 25,
    until: 'resolved',
    alert: 'nightly-report finished after its 06:00 deadline',
    change: 'Reporting warehouse resized',
    notes: [],
    result: {
      summary: 'The nightly report ran late after the warehouse was resized.',
      root_cause: 'The resize restarted the warehouse during the report window.',
      impact: 'Reports arrived 20 minutes late.',
      action_items: [{ title: 'Schedule warehouse resizes outside the report window', owner: 'data' }],
    },
  },
  early: {
    kind: 'early',
    label: 'P2 acknowledged, then resolved',
    expect:
      'P2 is in EARLY_START_PRIORITIES: Devin starts gathering evidence as soon as the incident is acknowledged. Press Resolve when you like: the bot tells the same session to finish.',
    priority: 'P2',
    title: 'Payments webhook queue backing up',
    service: { id: 'PPAYMNT', name: 'Payments' },
    minutesOpen: 12,
    until: 'acknowledged',
    alert: 'payments-webhooks queue depth above 10,000',
    change: 'Feature flag async-refunds enabled for 50% of merchants',
    notes: ['Disabled async-refunds; queue draining at ~2,000/min.'],
    result: {
      summary:
        'Turning on asynchronous refunds doubled the events on the payments webhook queue; the consumers, sized for the old rate, fell 40 minutes behind.',
      root_cause:
        'The async-refunds flag was rolled out by merchant share without a capacity check of the queue consumers it feeds.',
      impact:
        'Merchants received payment and refund webhooks up to 40 minutes late; no events were lost and every one was delivered.',
      action_items: [
        { title: 'Autoscale the webhook consumers on queue depth', owner: 'payments' },
        { title: 'Add a capacity check to the flag rollout checklist', owner: 'payments' },
        { title: 'Page on queue age, not depth', owner: 'sre' },
      ],
    },
  },
  storm: {
    kind: 'storm',
    label: 'Storm: 6 P1s on Inventory API',
    expect:
      'One outage, six pages (one per host), all on one service within STORM_WINDOW: they form one group with one message, updated in place, and one Devin session; the incidents after the first reach it as messages.',
    priority: 'P1',
    title: 'Inventory API 5xx on inv-{n}',
    service: { id: 'PINVENT', name: 'Inventory API' },
    minutesOpen: 17,
    until: 'resolved',
    count: 6,
    alert: 'inventory-api 5xx rate above 5% on one host',
    change: 'Rotated the inventory database credentials',
    notes: ['The new database password reached only half of the hosts; restarting the rest.'],
    result: {
      summary:
        'A credential rotation updated the inventory database password before every host had the new one; each host answered 5xx from the moment its connections were recycled until it was restarted.',
      root_cause:
        'The rotation changed the password first and rolled the hosts afterwards, with no overlap in which both passwords worked.',
      impact:
        'Inventory lookups failed on six hosts in turn for 17 minutes; checkout fell back to cached stock.',
      action_items: [
        { title: 'Rotate with two valid passwords and a rollout in between', owner: 'platform' },
        { title: 'Page once per service outage, not once per host', owner: 'sre' },
      ],
    },
  },
};

/** An incident PagerDuty knows but never sent a webhook for: `/postmortem 1000` starts its postmortem. */
export const SEEDED_INCIDENT: {
  number: number;
  title: string;
  priority: string;
  service: { id: string; name: string };
  result: PostmortemOutput;
} = {
  number: 1000,
  title: 'Login latency spike after a config push',
  priority: 'P4',
  service: { id: 'PIDENT', name: 'Identity' },
  result: {
    summary:
      'A config push turned on verbose audit logging for every login; writing the logs synchronously added 900 ms to each login for 22 minutes.',
    root_cause: 'Audit logging writes synchronously, and the flag was pushed to all regions at once.',
    impact: 'Logins took about a second longer for 22 minutes; none failed.',
    action_items: [{ title: 'Make audit logging asynchronous', owner: 'identity' }],
  },
};

/** A PagerDuty-style incident ID (14 upper-case letters and digits). */
export function newIncidentId(): string {
  const alphabet = 'ABCDEFGHJKLMNPQRSTUVWXYZ0123456789';
  let id = 'Q';
  for (let i = 0; i < 13; i++) id += alphabet[randomInt(alphabet.length)];
  return id;
}

const minutes = (n: number) => n * 60_000;
const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

/** What PagerDuty's REST API holds for an incident: the incident and its timeline records. */
export function restRecords(
  scenario: Pick<Scenario, 'title' | 'priority' | 'service' | 'alert' | 'change' | 'notes'>,
  incident: { id: string; number: number; createdAtMs: number; ackAtMs: number; resolvedAtMs: number | null },
  responder: Person,
): { incident: RestIncident; records: IncidentRecords } {
  const who = { id: responder.pagerdutyId, summary: responder.name, type: 'user_reference' };
  const monitor = {
    id: 'PMONITOR',
    summary: 'Datadog',
    type: 'generic_events_api_inbound_integration_reference',
  };
  const { createdAtMs, ackAtMs, resolvedAtMs } = incident;
  const end = resolvedAtMs ?? ackAtMs;
  const notes = scenario.notes.map((content, i) => ({
    id: `PNOTE${i}`,
    content,
    created_at: iso(ackAtMs + ((end - ackAtMs) * (i + 1)) / (scenario.notes.length + 1)),
    user: who,
  }));
  const logEntries: Record<string, unknown>[] = [
    {
      type: 'trigger_log_entry',
      created_at: iso(createdAtMs),
      summary: `Triggered through the API: ${scenario.alert}`,
      agent: monitor,
      channel: { type: 'api' },
    },
    {
      type: 'notify_log_entry',
      created_at: iso(createdAtMs + 5_000),
      summary: `Notified ${responder.name} by push notification`,
      agent: null,
    },
    {
      type: 'acknowledge_log_entry',
      created_at: iso(ackAtMs),
      summary: `Acknowledged by ${responder.name}`,
      agent: who,
    },
    ...notes.map((n) => ({
      type: 'annotate_log_entry',
      created_at: n.created_at,
      summary: 'Note added',
      agent: who,
      channel: { type: 'note', summary: n.content },
    })),
    ...(resolvedAtMs !== null
      ? [
          {
            type: 'resolve_log_entry',
            created_at: iso(resolvedAtMs),
            summary: `Resolved by ${responder.name}`,
            agent: who,
          },
        ]
      : []),
  ];
  return {
    incident: {
      id: incident.id,
      incident_number: incident.number,
      title: scenario.title,
      status: resolvedAtMs !== null ? 'resolved' : 'acknowledged',
      urgency: 'high',
      priority: { id: `PPRI${scenario.priority}`, summary: scenario.priority },
      service: { id: scenario.service.id, summary: scenario.service.name, type: 'service_reference' },
      created_at: iso(createdAtMs),
      resolved_at: resolvedAtMs !== null ? iso(resolvedAtMs) : null,
      last_status_change_at: iso(end),
      last_status_change_by: who,
      html_url: `https://acme.pagerduty.com/incidents/${incident.id}`,
    },
    records: {
      log_entries: logEntries,
      notes,
      alerts: [
        {
          id: 'PALERT1',
          created_at: iso(createdAtMs),
          severity: 'critical',
          summary: scenario.alert,
          status: resolvedAtMs !== null ? 'resolved' : 'triggered',
        },
      ],
      change_events: [
        {
          id: 'PCHANGE1',
          timestamp: iso(createdAtMs - minutes(6)),
          summary: scenario.change,
          source: 'GitHub',
        },
      ],
    },
  };
}
