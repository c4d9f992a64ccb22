import type { Logger } from 'pino';
import type { Job, PlacementBound, StartedPlacement, Store } from '../store/store.js';
import { DomainError } from './errors.js';
import { syncDigestJob } from './jobs.js';
import type { PostmortemRun } from './model.js';
import type { ApprovalDigestView, DigestChannel } from './ports.js';
import type { Outcome, PostmortemService } from './service.js';

/**
 * A channel's approval digest (SLACK_DIGEST_AFTER): in a storm, approval requests beyond the first few of a
 * channel are not posted one by one; they fold into one message for the channel, redrawn in place from the
 * store at most once per interval, which says how many wait, lists the newest, and decides them in bulk.
 *
 * - Placement is decided once per request, in the store: a request goes to the digest when at least
 *   `after` requests of its channel opened before it still wait. It stays there until decided (its card is
 *   never posted later); skipped or expired there, it gets no message of its own.
 * - The digest lists every request waiting in the channel (those with a card of their own too), and stays
 *   open while any request shown only in it waits. When none does, it is redrawn once more as "nothing
 *   waits here any more" and left where it is; the next request that folds posts a new digest at the
 *   bottom of the channel, where people will see it.
 * - A request approved from the digest posts its run's message in the digest's thread (and its thread
 *   replies after it): the postmortem can be followed and stopped without 25 new messages in the channel.
 * - Every decision from it is the single card's lifecycle step (PostmortemService.approve/skip), one run at
 *   a time: double clicks, two people and several replicas decide each request once.
 *
 * The bound on a channel's top-level posts in a storm: while a storm lasts, a channel gets at most
 * SLACK_DIGEST_AFTER top-level messages about new runs plus one digest. Once SLACK_DIGEST_AFTER of the bot's
 * run messages are open in a channel, further approval requests fold into the digest (as above), and
 * further runs started by policy (auto-start P1/P2, storm groups, early starts) post their run message in
 * the digest's thread instead of the channel, and the digest lists them ("Started automatically: N", the
 * newest few). A run that policy would start but the day's budget holds is a request: it folds like one,
 * and the digest says that approving it overrides the budget (Approve all asks first).
 *
 * - "Open" counts the approval requests still waiting (as above) plus the runs started by policy in the
 *   channel whose own top-level message was placed within STORM_WINDOW of now (`recentMs`). Not "while
 *   the run is live": a session can run for an hour, or wait for a slot behind
 *   DEVIN_MAX_CONCURRENT_SESSIONS for longer, and counting it would fold runs into a digest long after the
 *   storm ended, in a channel that is readable again. STORM_WINDOW is the bot's own measure of one storm
 *   (resolutions within it belong together), and a message older than it has scrolled away with it.
 * - A started run is placed once, atomically, in the same table as requests (kind 'run'), under the
 *   channel's lock, so replicas agree. Its session start never waits for this: only where its message is
 *   shown changes. One that folds takes the channel's digest thread when the digest is live (open, or with
 *   started runs placed within the window in its thread); else its message job waits (rescheduled, never
 *   a sleep) until the redraw posts a digest and adopts it. Its thread replies follow it there.
 * - Started runs are informational: the digest stays open (updated in place, bulk buttons) while requests
 *   wait in it, as above. A closed digest with started runs in its thread is redrawn in place while they
 *   are recent, so a storm of started runs alone posts one digest, not one per run.
 * - SLACK_DIGEST_AFTER=0: no digest, every run and request posts its own message.
 */

/**
 * How long a started run's own message counts as open when STORM_WINDOW is 0 (grouping off): STORM_WINDOW's
 * default, the same measure of one storm.
 */
export const STARTED_RECENT_DEFAULT_MS = 10 * 60_000;

/** How many of the newest waiting requests the digest message lists. */
export const DIGEST_LISTED = 10;
/** How many requests one page of the Review modal offers (Slack allows 10 options per checkbox group). */
export const REVIEW_PAGE_SIZE = 10;

export type BulkDecision = 'approve' | 'skip';

/** What a decision taken from the digest came to. */
export type DigestOutcome =
  | { kind: 'decided'; decision: BulkDecision; decided: number; alreadyDecided: number }
  | Extract<Outcome, { kind: 'not_allowed' | 'failed' }>;

export interface ReviewPage {
  channel: string;
  /** Zero-based; clamped to the last page when requests were decided meanwhile. */
  page: number;
  pages: number;
  total: number;
  runs: PostmortemRun[];
}

export interface ApprovalDigestDeps {
  store: Store;
  channel: DigestChannel;
  service: PostmortemService;
  /** SLACK_DIGEST_AFTER; 0 turns the digest off (every request gets its own message). */
  after: number;
  /** The least time between two redraws of one channel's digest. */
  intervalMs: number;
  /** STORM_WINDOW (or its default when grouping is off): how long a started run's own message counts as open. */
  recentMs: number;
  logger: Logger;
  now: () => number;
}

export class ApprovalDigest {
  constructor(private readonly deps: ApprovalDigestDeps) {}

  get enabled(): boolean {
    return this.deps.after > 0;
  }

  /** Whether the person may decide requests (undefined when they may): asked before the Review modal opens. */
  mayDecide(userId: string): Promise<Extract<Outcome, { kind: 'not_allowed' | 'failed' }> | undefined> {
    return this.deps.service.mayStart(userId);
  }

  /** Where a new approval request is shown: asked before its message would be posted. */
  async place(run: PostmortemRun): Promise<'card' | 'digest'> {
    if (!this.enabled) return 'card';
    const placed = await this.deps.store.placeApprovalRequest(
      run.id,
      this.bound(),
      syncDigestJob(run.channel),
    );
    if (placed === 'digest') {
      this.deps.logger.info(
        { runId: run.id, incidentId: run.incidentId, channel: run.channel },
        'approval request folded into the channel digest',
      );
    }
    return placed ?? 'card';
  }

  /**
   * Where the message of a run started by policy is shown: its own ('card'), or the digest's thread, which
   * may not be posted yet (threadTs null: the message waits for the redraw that posts it).
   */
  async placeStarted(run: PostmortemRun): Promise<StartedPlacement> {
    if (!this.enabled) return { shownIn: 'card', threadTs: null };
    const placed = await this.deps.store.placeStartedRun(run.id, this.bound(), syncDigestJob(run.channel));
    if (placed?.shownIn === 'digest' && placed.threadTs === null) {
      this.deps.logger.info(
        { runId: run.id, incidentId: run.incidentId, channel: run.channel },
        "run started by policy folded into the channel digest's thread",
      );
    }
    return placed ?? { shownIn: 'card', threadTs: null };
  }

  private bound(): PlacementBound {
    return { after: this.deps.after, since: this.deps.now() - this.deps.recentMs };
  }

  /** Whether the run's approval request was folded into the digest (it has no message of its own then). */
  async isInDigest(run: PostmortemRun): Promise<boolean> {
    return (await this.deps.store.approvalPlacement(run.id))?.shownIn === 'digest';
  }

  /**
   * The digest thread a request approved from the digest reports in: its message is posted there rather
   * than as one more message in a channel that is in a storm, and its thread replies follow it. Chosen
   * once, the first time it is asked (the channel's latest digest); undefined for other runs.
   */
  async threadFor(run: PostmortemRun): Promise<string | undefined> {
    const { store } = this.deps;
    const placement = await store.approvalPlacement(run.id);
    if (placement?.shownIn !== 'digest') return undefined;
    if (placement.threadTs) return placement.threadTs;
    // A started run's thread is given when its digest is posted (placeStarted), never guessed here.
    if (placement.kind === 'run') return undefined;
    const ts = (await store.getDigest(run.channel))?.ts;
    if (!ts) return undefined;
    await store.setApprovalThread(run.id, ts);
    return (await store.approvalPlacement(run.id))?.threadTs ?? ts;
  }

  /** A request of the channel was decided or expired: the digest, if there is one, is redrawn. */
  async changed(run: PostmortemRun): Promise<void> {
    if (!this.enabled) return;
    await this.deps.store.touchDigest(run.channel, syncDigestJob(run.channel));
  }

  /** Job: redraw the channel's digest from the store, unless it shows the latest change already. */
  async redraw(channelId: string, job: Job): Promise<void> {
    const { store, channel, now, intervalMs, logger } = this.deps;
    const digest = await store.getDigest(channelId);
    if (!digest || digest.version <= digest.drawnVersion) return;
    const wait = digest.drawnAt + intervalMs - now();
    if (wait > 0) {
      throw new DomainError('digest_coalescing', `the digest of ${channelId} was drawn moments ago`, {
        retryAfterMs: wait,
      });
    }
    const waiting = await store.waitingApprovals(channelId, { limit: DIGEST_LISTED });
    const since = now() - this.deps.recentMs;
    let started = await store.startedInDigest(channelId, {
      threadTs: digest.ts,
      since,
      limit: DIGEST_LISTED,
    });
    const open = waiting.inDigest > 0;
    // Live: its message is the one to update: open for requests, or holding recent started runs.
    const live = digest.ts !== null && (digest.open || started.recentInThread > 0);
    // A new digest holds only the started runs waiting for one, not those in an older digest's thread.
    if (!live && digest.ts !== null)
      started = await store.startedInDigest(channelId, { threadTs: null, since, limit: DIGEST_LISTED });
    const view: ApprovalDigestView = {
      channel: channelId,
      total: waiting.total,
      incidents: waiting.incidents,
      inDigest: waiting.inDigest,
      held: waiting.held,
      newest: waiting.runs,
      openedUpTo: waiting.newestOpenedAt,
      started: { total: started.total, newest: started.runs },
    };
    let ts = digest.ts;
    let drawnLive = false;
    // A live digest is updated in place; a closed one is told so once; a new fold (or a started run) after
    // it closed posts a new digest at the bottom of the channel.
    if (live && ts) {
      await channel.updateDigest(view, ts, job.id);
      drawnLive = true;
    } else if (open || started.pending > 0) {
      ts = (await channel.postDigest(view, job.id)).ts;
      drawnLive = true;
    }
    // Adopting: the started runs waiting for a digest thread get this one, and their messages go there.
    await store.digestDrawn(channelId, { ts, open, version: digest.version, at: now(), adopt: drawnLive });
    logger.debug(
      {
        channel: channelId,
        waiting: waiting.total,
        inDigest: waiting.inDigest,
        started: started.total,
        open,
      },
      'digest drawn',
    );
  }

  /**
   * Approve all / Skip all: every request of the channel waiting when the digest was drawn (opened up to
   * `openedUpTo`); one that came in after it was drawn is not decided unseen.
   */
  async decideAll(
    channelId: string,
    openedUpTo: number,
    userId: string,
    decision: BulkDecision,
  ): Promise<DigestOutcome> {
    const denied = await this.deps.service.mayStart(userId);
    if (denied) return denied;
    let decided = 0;
    let alreadyDecided = 0;
    const seen = new Set<string>();
    for (;;) {
      // Decided requests leave the waiting list, so the first page is always the next one.
      const page = await this.deps.store.waitingApprovals(channelId, { openedUpTo, limit: 100 });
      const fresh = page.runs.filter((r) => !seen.has(r.id));
      if (fresh.length === 0) break;
      for (const run of fresh) {
        seen.add(run.id);
        const outcome = await this.decideOne(run.id, userId, decision);
        if (outcome === 'denied')
          return (await this.deps.service.mayStart(userId)) ?? stop(decision, decided);
        if (outcome === 'decided') decided++;
        else alreadyDecided++;
      }
    }
    this.log(channelId, userId, decision, decided, alreadyDecided);
    return { kind: 'decided', decision, decided, alreadyDecided };
  }

  /** Review: the requests a person checked, each decided once (one already decided is counted, not redone). */
  async decideSome(
    channelId: string,
    runIds: readonly string[],
    userId: string,
    decision: BulkDecision,
  ): Promise<DigestOutcome> {
    const denied = await this.deps.service.mayStart(userId);
    if (denied) return denied;
    let decided = 0;
    let alreadyDecided = 0;
    for (const runId of new Set(runIds)) {
      const run = await this.deps.store.getRun(runId);
      // Only requests of this digest's channel: a forged value cannot reach another channel's runs.
      if (!run || run.channel !== channelId) continue;
      const outcome = await this.decideOne(runId, userId, decision);
      if (outcome === 'denied') return (await this.deps.service.mayStart(userId)) ?? stop(decision, decided);
      if (outcome === 'decided') decided++;
      else alreadyDecided++;
    }
    this.log(channelId, userId, decision, decided, alreadyDecided);
    return { kind: 'decided', decision, decided, alreadyDecided };
  }

  /** One page of the Review modal: the waiting requests of the channel, newest first. */
  async reviewPage(channelId: string, page: number): Promise<ReviewPage> {
    const { store } = this.deps;
    const first = await store.waitingApprovals(channelId, { limit: 0 });
    const pages = Math.max(1, Math.ceil(first.total / REVIEW_PAGE_SIZE));
    const clamped = Math.min(Math.max(0, Math.floor(page)), pages - 1);
    const waiting = await store.waitingApprovals(channelId, {
      limit: REVIEW_PAGE_SIZE,
      offset: clamped * REVIEW_PAGE_SIZE,
    });
    return { channel: channelId, page: clamped, pages, total: waiting.total, runs: waiting.runs };
  }

  private async decideOne(
    runId: string,
    userId: string,
    decision: BulkDecision,
  ): Promise<'decided' | 'stale' | 'denied'> {
    const { service } = this.deps;
    const outcome =
      decision === 'approve' ? await service.approve(runId, userId) : await service.skip(runId, userId);
    if (outcome.kind === 'done') return 'decided';
    if (outcome.kind === 'not_allowed' || outcome.kind === 'failed') return 'denied';
    return 'stale';
  }

  private log(channel: string, userId: string, decision: BulkDecision, decided: number, already: number) {
    this.deps.logger.info(
      { channel, userId, decision, decided, alreadyDecided: already },
      'approval requests decided from the digest',
    );
  }
}

function stop(decision: BulkDecision, decided: number): DigestOutcome {
  return { kind: 'decided', decision, decided, alreadyDecided: 0 };
}
