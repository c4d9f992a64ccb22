import { z } from 'zod';
import { formatDurationSetting } from '../config/duration.js';
import type { RunPatch } from '../store/store.js';
import type { RunEvent } from './lifecycle.js';
import type { PostmortemResult, PostmortemRun, RunState } from './model.js';
import type { Session } from './ports.js';

/**
 * Pure: what a polled Devin session means for its run. The session follower (session-follower.ts) does
 * the polling and fires the step this returns.
 */

export interface FollowLimits {
  /** Stop following a session that has not finished after this long. */
  giveUpAfterMs: number;
  /** Stop following an early-start session whose incident has not resolved after this long. */
  earlyStartMaxWaitMs: number;
}

export interface Observation {
  /** The state the session puts the run in. */
  to: RunState;
  patch: RunPatch;
  /** The lifecycle step that gets it there; absent when the state stays (then only the patch is written). */
  event?: RunEvent;
}

/** The step that moves a followed run to the state its session shows. */
const STEP_TO: Partial<Record<RunState, RunEvent>> = {
  started: 'session_working',
  needs_input: 'session_needs_input',
  finished: 'session_finished',
  session_failed: 'session_failed',
  abandoned: 'give_up',
};

/** suspended reasons that mean the session cannot go on without someone paying or raising a limit. */
const LIMIT_REASONS: Record<string, string> = {
  usage_limit_exceeded: 'the usage limit was reached',
  out_of_credits: 'the organization is out of credits',
  out_of_quota: 'the organization is out of quota',
  org_usage_limit_exceeded: 'the organization usage limit was reached',
  total_session_limit_exceeded: 'the session limit was reached',
  error: 'of an error',
};

const resultSchema = z.looseObject({
  summary: z.string().optional().catch(undefined),
  root_cause: z.string().optional().catch(undefined),
  impact: z.string().optional().catch(undefined),
  action_items: z
    .array(z.unknown())
    .optional()
    .catch(undefined)
    .transform((items) =>
      (items ?? []).flatMap((i) => {
        const item = z
          .object({ title: z.string().min(1), owner: z.string().optional().catch(undefined) })
          .safeParse(i);
        return item.success ? [item.data] : [];
      }),
    ),
  postmortem_pr_url: z.string().optional().catch(undefined),
});

export function parseResult(output: unknown): PostmortemResult | null {
  const parsed = resultSchema.safeParse(output);
  if (!parsed.success) return null;
  const { summary, root_cause, impact, action_items, postmortem_pr_url } = parsed.data;
  const result: PostmortemResult = {};
  if (summary) result.summary = summary;
  if (root_cause) result.root_cause = root_cause;
  if (impact) result.impact = impact;
  if (action_items.length > 0) {
    result.action_items = action_items.map((a) =>
      a.owner ? { title: a.title, owner: a.owner } : { title: a.title },
    );
  }
  if (postmortem_pr_url) result.postmortem_pr_url = postmortem_pr_url;
  return Object.keys(result).length > 0 ? result : null;
}

/** PR links from the session and from the structured result, https only, without duplicates. */
function pullRequestUrls(session: Session, result: PostmortemResult | null): string[] {
  const urls = [...session.pullRequestUrls, result?.postmortem_pr_url ?? ''];
  return [...new Set(urls.filter((u) => /^https:\/\/\S+$/.test(u)))];
}

/**
 * What a polled Devin session means for its run (docs.devin.ai v3 session states): done when
 * status_detail is finished or status is exit; failed on error or a limit/billing suspension; needing a
 * person while waiting for user or approval, or suspended otherwise; working in every other case
 * (including states Devin adds later). An early-start session only reports failures until the incident
 * resolves: until then waiting or finishing is expected.
 */
export function observeSession(
  run: PostmortemRun,
  session: Session,
  now: number,
  limits: FollowLimits,
): Observation {
  const status = session.status;
  const detail = session.statusDetail;
  const result = parseResult(session.structuredOutput);
  const patch: RunPatch = {
    devinStatus: status,
    devinStatusDetail: detail,
    ...(session.acusConsumed === null ? {} : { acusConsumed: session.acusConsumed }),
    pullRequests: pullRequestUrls(session, result),
  };
  const change = (to: RunState, extra: RunPatch = {}): Observation => {
    const event = to !== run.state ? STEP_TO[to] : undefined;
    return { to, patch: { ...patch, ...extra }, ...(event ? { event } : {}) };
  };
  const followedFor = now - (run.sessionStartedAt ?? run.createdAt);

  if (status === 'error')
    return change('session_failed', { error: 'Devin reported an error in the session' });
  if (status === 'suspended' && detail && detail in LIMIT_REASONS) {
    return change('session_failed', {
      error: `Devin suspended the session because ${LIMIT_REASONS[detail]} (${detail})`,
    });
  }
  // An early start is still gathering until Devin has the finish message, and what it reported before
  // that message (waiting, even finished) is about the gathering, not the postmortem.
  const sessionUpdatedMs = session.updatedAtMs ?? Number.POSITIVE_INFINITY;
  const gathering =
    run.trigger === 'early' && (run.finalizeSentAt === null || sessionUpdatedMs < run.finalizeSentAt - 1000);
  if (gathering) {
    if (run.finalizeRequestedAt === null && followedFor > limits.earlyStartMaxWaitMs) {
      return change('abandoned', {
        error: `The incident was not resolved within ${formatDurationSetting(limits.earlyStartMaxWaitMs)} of the early start, so the bot stopped following this session and terminated it in Devin`,
      });
    }
    return change('started');
  }
  if (detail === 'finished' || status === 'exit') return change('finished', { result });
  if (followedFor > limits.giveUpAfterMs) {
    return change('abandoned', {
      error: `The session had not finished after ${formatDurationSetting(limits.giveUpAfterMs)}, so the bot stopped following it and terminated it in Devin`,
    });
  }
  if (status === 'suspended' || detail === 'waiting_for_user' || detail === 'waiting_for_approval') {
    return change('needs_input');
  }
  return change('started');
}

/** Whether an observation changes anything worth a write. */
export function changesRun(run: PostmortemRun, o: Observation): boolean {
  return (
    o.to !== run.state ||
    o.patch.devinStatus !== run.devinStatus ||
    o.patch.devinStatusDetail !== run.devinStatusDetail ||
    (o.patch.acusConsumed !== undefined && o.patch.acusConsumed !== run.acusConsumed) ||
    JSON.stringify(o.patch.pullRequests) !== JSON.stringify(run.pullRequests)
  );
}
