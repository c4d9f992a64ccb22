import type { FakeDevin, FakeSession } from './stand-ins/fake-devin.js';

/**
 * Plays Devin's side of a postmortem session on the Devin stand-in, one step at a time: working, waiting
 * for a person, working again, finished with a pull request and a structured result (or failed). The bot
 * only sees what its polling of `GET …/sessions/{id}` shows, exactly as with the real Devin.
 */

interface Step {
  label: string;
  change?: Partial<FakeSession>;
}

const STEPS: readonly Step[] = [
  { label: 'Session created' },
  {
    label: 'Working: reading the incident timeline and evidence',
    change: { status: 'running', status_detail: 'working' },
  },
  {
    label: 'Waiting for a person: asks which dashboard shows the error rate',
    change: { status: 'running', status_detail: 'waiting_for_user' },
  },
  {
    label: 'Working again: writing the postmortem',
    change: { status: 'running', status_detail: 'working' },
  },
  { label: 'Finished: pull request opened, result filled in' },
];
const WORKING_AGAIN = 3;
const FINISHED = STEPS.length - 1;

export interface SessionResult {
  summary: string;
  root_cause: string;
  impact: string;
  action_items: { title: string; owner?: string }[];
}

interface Progress {
  step: number;
  /** Early start: Devin gathers evidence until the bot's finish message arrives. */
  gathering: boolean;
  ended: 'finished' | 'failed' | 'stopped' | null;
  changedAt: number;
}

export interface SessionView {
  id: string;
  url: string;
  title: string | null;
  status: string;
  statusDetail: string | null;
  steps: { label: string; state: 'done' | 'current' | 'todo' }[];
  ended: Progress['ended'];
  gathering: boolean;
  /** Why "Next step" does nothing right now, if it does not. */
  waitingFor: string | null;
  prompt: string;
  /** Messages the bot sent into the session (an early start's finish message). */
  messages: string[];
  pullRequests: string[];
}

export class DevinScript {
  private readonly progress = new Map<string, Progress>();
  private prNumber = 100;
  private timer: NodeJS.Timeout | undefined;
  /** Auto-step every this many ms; 0: only when asked. */
  autoStepMs = 0;

  constructor(
    private readonly devin: FakeDevin,
    private readonly resultFor: (session: FakeSession) => SessionResult,
    private readonly isGathering: (session: FakeSession) => boolean,
    private readonly onChange: () => void,
    private readonly now: () => number = Date.now,
  ) {
    devin.events.on('session', (session, change) => {
      if (change === 'created') {
        this.progress.set(session.session_id, {
          step: 0,
          gathering: this.isGathering(session),
          ended: null,
          changedAt: this.now(),
        });
      } else if (change === 'message') {
        // The finish message (or any message) sets Devin working again, on the postmortem this time.
        const p = this.progress.get(session.session_id);
        if (p && p.ended === null)
          Object.assign(p, { gathering: false, step: WORKING_AGAIN, changedAt: this.now() });
      } else if (change === 'terminated') {
        const p = this.progress.get(session.session_id);
        if (p && p.ended === null) Object.assign(p, { ended: 'stopped', changedAt: this.now() });
      }
      this.onChange();
    });
  }

  start(): void {
    this.timer = setInterval(() => this.autoStep(), 250);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** Moves the session one step on. Answers why not, when it cannot move. */
  next(sessionId: string): { ok: true } | { ok: false; reason: string } {
    const { session, progress } = this.find(sessionId);
    const blocked = this.blockedReason(progress);
    if (blocked) return { ok: false, reason: blocked };
    progress.step++;
    progress.changedAt = this.now();
    if (progress.step === FINISHED) {
      const pr = `https://github.com/acme/postmortems/pull/${++this.prNumber}`;
      progress.ended = 'finished';
      this.devin.update(session.session_id, {
        status: 'running',
        status_detail: 'finished',
        pull_requests: [{ pr_url: pr, pr_state: 'open' }],
        structured_output: { ...this.resultFor(session), postmortem_pr_url: pr },
        acus_consumed: 3.5,
      });
    } else {
      const change = STEPS[progress.step]?.change;
      if (change) this.devin.update(session.session_id, change);
    }
    return { ok: true };
  }

  /** Ends the session in an error, as when Devin itself fails. */
  fail(sessionId: string): { ok: true } | { ok: false; reason: string } {
    const { session, progress } = this.find(sessionId);
    if (progress.ended) return { ok: false, reason: `the session has already ${progress.ended}` };
    Object.assign(progress, { ended: 'failed', changedAt: this.now() });
    this.devin.update(session.session_id, { status: 'error', status_detail: null });
    return { ok: true };
  }

  views(): SessionView[] {
    return this.devin.sessions.map((session) => {
      const progress = this.progress.get(session.session_id) ?? {
        step: 0,
        gathering: false,
        ended: null,
        changedAt: 0,
      };
      const request = this.devin.createRequests.find((r) => {
        const tags = r.tags as string[] | undefined;
        return tags?.every((t) => session.tags.includes(t)) === true;
      });
      return {
        id: session.session_id,
        url: session.url,
        title: session.title,
        status: session.status,
        statusDetail: session.status_detail,
        steps: STEPS.map((s, i) => ({
          label:
            i === 1 && progress.gathering
              ? 'Working: gathering evidence while the incident is open'
              : s.label,
          state: i < progress.step ? 'done' : i === progress.step ? 'current' : 'todo',
        })),
        ended: progress.ended,
        gathering: progress.gathering,
        waitingFor: this.blockedReason(progress),
        prompt: typeof request?.prompt === 'string' ? request.prompt : '',
        messages: this.devin.messages.filter((m) => m.sessionId === session.session_id).map((m) => m.message),
        pullRequests: session.pull_requests.map((p) => p.pr_url),
      };
    });
  }

  private blockedReason(progress: Progress): string | null {
    if (progress.ended) return `The session ${progress.ended}.`;
    if (progress.gathering && progress.step >= 1)
      return 'Gathering evidence until the incident resolves: press Resolve in the PagerDuty panel.';
    return null;
  }

  private find(sessionId: string): { session: FakeSession; progress: Progress } {
    const session = this.devin.sessions.find((s) => s.session_id === sessionId);
    const progress = this.progress.get(sessionId);
    if (!session || !progress) throw new UnknownSessionError(sessionId);
    return { session, progress };
  }

  private autoStep(): void {
    if (this.autoStepMs <= 0) return;
    // Every step changes the stand-in's session, which tells onChange by itself.
    for (const [id, progress] of this.progress) {
      if (!this.blockedReason(progress) && this.now() - progress.changedAt >= this.autoStepMs) this.next(id);
    }
  }
}

export class UnknownSessionError extends Error {
  readonly status = 404;
  constructor(readonly sessionId: string) {
    super(`no Devin session ${sessionId}`);
  }
}
