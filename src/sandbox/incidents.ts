import {
  type Person,
  type PostmortemOutput,
  restRecords,
  SCENARIOS,
  type Scenario,
  type ScenarioKind,
  SEEDED_INCIDENT,
} from './scenarios.js';
import type { FakePagerDuty } from './stand-ins/fake-pagerduty.js';
import {
  type IncidentEventType,
  incidentEvent,
  postPagerDutyWebhook,
  type WebhookIncident,
} from './stand-ins/pagerduty-webhooks.js';

/**
 * PagerDuty's side of the demo: incidents the page fires are known to the PagerDuty REST stand-in (so the
 * bot's evidence and `/postmortem <number>` find them) and their events are delivered to the bot as signed
 * v3 webhooks, one after the other, as PagerDuty does for one incident.
 */

export interface Delivery {
  eventType: IncidentEventType;
  /** The bot's HTTP answer, or the network error. */
  status: number | string;
  at: number;
}

export interface DemoIncident {
  id: string;
  number: number;
  kind: ScenarioKind | 'seeded';
  /** Which of a storm's incidents this is (1 otherwise). */
  variant?: number;
  title: string;
  priority: string;
  service: string;
  status: WebhookIncident['status'];
  expect: string;
  deliveries: Delivery[];
  /** What the bot logged about this incident, in order. */
  bot: string[];
  /** Notes the bot added to the incident in PagerDuty (the postmortem link). */
  notes: string[];
}

export interface IncidentsDeps {
  pagerduty: FakePagerDuty;
  botUrl: () => string;
  webhookSecret: string;
  responder: Person;
  onChange: () => void;
  now?: () => number;
}

const minutes = (n: number) => n * 60_000;

export class DemoIncidents {
  private readonly incidents: DemoIncident[] = [];
  private readonly webhookState = new Map<
    string,
    WebhookIncident & { createdAtMs: number; ackAtMs: number }
  >();
  private nextNumber = SEEDED_INCIDENT.number + 1;
  private readonly now: () => number;
  /** Deliveries for one incident go out in order, one at a time. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly deps: IncidentsDeps) {
    this.now = deps.now ?? Date.now;
    deps.pagerduty.events.on('note', (note) => {
      this.incidents.find((i) => i.id === note.incidentId)?.notes.push(note.content);
      deps.onChange();
    });
  }

  /** The incident PagerDuty knows without having sent a webhook: for `/postmortem 1000`. */
  seed(id: string): void {
    const resolvedAtMs = this.now() - minutes(60 * 26);
    const createdAtMs = resolvedAtMs - minutes(22);
    const scenario = {
      ...SEEDED_INCIDENT,
      alert: 'identity login p95 above 1s',
      change: 'Config push: audit logging verbosity',
      notes: ['Reverted the audit logging flag; p95 back to 120 ms.'],
    };
    const { incident, records } = restRecords(
      scenario,
      { id, number: SEEDED_INCIDENT.number, createdAtMs, ackAtMs: createdAtMs + minutes(2), resolvedAtMs },
      this.deps.responder,
    );
    this.deps.pagerduty.addIncident(incident);
    this.deps.pagerduty.records.set(id, records);
    this.incidents.push({
      id,
      number: SEEDED_INCIDENT.number,
      kind: 'seeded',
      title: SEEDED_INCIDENT.title,
      priority: SEEDED_INCIDENT.priority,
      service: SEEDED_INCIDENT.service.name,
      status: 'resolved',
      expect: 'Resolved yesterday; PagerDuty never sent the bot a webhook. Try `/postmortem 1000`.',
      deliveries: [],
      bot: [],
      notes: [],
    });
  }

  /**
   * Fires a scenario: triggered, acknowledged and (unless it stops at acknowledged) resolved. A storm
   * fires its `count` incidents one after the other, each with an ID from `newId`; the first is returned.
   */
  async fire(kind: ScenarioKind, newId: () => string): Promise<DemoIncident> {
    const count = SCENARIOS[kind].count ?? 1;
    const fired: Promise<DemoIncident>[] = [];
    for (let n = 1; n <= count; n++) fired.push(this.fireOne(kind, newId(), n));
    const [first] = await Promise.all(fired);
    return first as DemoIncident;
  }

  private fireOne(kind: ScenarioKind, id: string, n: number): Promise<DemoIncident> {
    const scenario = this.scenarioOf(kind, n);
    const now = this.now();
    const number = this.nextNumber++;
    const createdAtMs = now - minutes(scenario.minutesOpen);
    const ackAtMs = scenario.until === 'acknowledged' ? now : createdAtMs + minutes(3);
    const incident: DemoIncident = {
      id,
      number,
      kind,
      variant: n,
      title: scenario.title,
      priority: scenario.priority,
      service: scenario.service.name,
      status: 'triggered',
      expect: scenario.expect,
      deliveries: [],
      bot: [],
      notes: [],
    };
    this.incidents.push(incident);
    this.webhookState.set(id, {
      id,
      number,
      title: scenario.title,
      status: 'triggered',
      priority: scenario.priority,
      urgency: 'high',
      service: scenario.service,
      createdAt: new Date(createdAtMs).toISOString(),
      assignee: { id: this.deps.responder.pagerdutyId, name: this.deps.responder.name },
      createdAtMs,
      ackAtMs,
    });
    this.updateRest(scenario, id, null);
    this.deps.onChange();
    return this.enqueue(async () => {
      await this.deliver(incident, 'incident.triggered', createdAtMs, null);
      await this.deliver(incident, 'incident.acknowledged', ackAtMs, this.deps.responder);
      if (scenario.until === 'resolved') await this.resolveNow(incident, scenario);
      return incident;
    });
  }

  /** Resolves an acknowledged incident now. */
  resolve(id: string): Promise<DemoIncident> {
    const incident = this.incidents.find((i) => i.id === id);
    if (!incident || incident.kind === 'seeded') throw new UnknownIncidentError(id);
    const scenario = this.scenarioOf(incident.kind, incident.variant ?? 1);
    return this.enqueue(async () => {
      if (incident.status !== 'resolved') await this.resolveNow(incident, scenario);
      return incident;
    });
  }

  /** The scenario as incident `n` of it: a storm numbers its titles. */
  private scenarioOf(kind: ScenarioKind, n: number): Scenario {
    const scenario = SCENARIOS[kind];
    return { ...scenario, title: scenario.title.replace('{n}', String(n)) };
  }

  /** A line the bot logged with this incident's ID. */
  botSaid(incidentId: string, msg: string): void {
    const incident = this.incidents.find((i) => i.id === incidentId);
    if (!incident) return;
    incident.bot.push(msg);
    this.deps.onChange();
  }

  /** The structured result Devin reports for this incident's postmortem. */
  resultFor(incidentId: string): PostmortemOutput | undefined {
    const kind = this.incidents.find((i) => i.id === incidentId)?.kind;
    if (!kind) return undefined;
    return kind === 'seeded' ? SEEDED_INCIDENT.result : SCENARIOS[kind].result;
  }

  /** Whether the incident is still open (an early-start session is gathering evidence). */
  isOpen(incidentId: string): boolean {
    const status = this.incidents.find((i) => i.id === incidentId)?.status;
    return status !== undefined && status !== 'resolved';
  }

  list(): DemoIncident[] {
    return this.incidents;
  }

  /** Waits until every delivery queued so far has been answered. */
  settled(): Promise<unknown> {
    return this.queue;
  }

  private async resolveNow(incident: DemoIncident, scenario: Scenario): Promise<void> {
    const resolvedAtMs = this.now();
    this.updateRest(scenario, incident.id, resolvedAtMs);
    await this.deliver(incident, 'incident.resolved', resolvedAtMs, this.deps.responder);
  }

  private updateRest(scenario: Scenario, id: string, resolvedAtMs: number | null): void {
    const state = this.webhookState.get(id);
    if (!state) return;
    const { incident, records } = restRecords(
      scenario,
      { id, number: state.number, createdAtMs: state.createdAtMs, ackAtMs: state.ackAtMs, resolvedAtMs },
      this.deps.responder,
    );
    const existing = this.deps.pagerduty.incidents.find((i) => i.id === id);
    if (existing) Object.assign(existing, incident);
    else this.deps.pagerduty.addIncident(incident);
    this.deps.pagerduty.records.set(id, records);
  }

  private async deliver(
    incident: DemoIncident,
    type: IncidentEventType,
    occurredAtMs: number,
    agent: Person | null,
  ): Promise<void> {
    const state = this.webhookState.get(incident.id);
    if (!state) return;
    const status: WebhookIncident['status'] =
      type === 'incident.resolved'
        ? 'resolved'
        : type === 'incident.acknowledged'
          ? 'acknowledged'
          : 'triggered';
    state.status = status;
    const body = JSON.stringify(
      incidentEvent(type, state, {
        occurredAt: new Date(occurredAtMs).toISOString(),
        agent: agent ? { id: agent.pagerdutyId, name: agent.name } : null,
      }),
    );
    let answer: number | string;
    try {
      const res = await postPagerDutyWebhook(this.deps.botUrl(), body, { secret: this.deps.webhookSecret });
      await res.arrayBuffer();
      answer = res.status;
    } catch (err) {
      answer = (err as Error).message;
    }
    incident.status = status;
    incident.deliveries.push({ eventType: type, status: answer, at: this.now() });
    this.deps.onChange();
  }

  private enqueue<T>(work: () => Promise<T>): Promise<T> {
    const next = this.queue.then(work, work);
    this.queue = next.catch(() => {});
    return next;
  }
}

export class UnknownIncidentError extends Error {
  readonly status = 404;
  constructor(readonly incidentId: string) {
    super(`no incident ${incidentId} to resolve`);
  }
}
