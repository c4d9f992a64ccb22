import type { webApi } from '@slack/bolt';
import type { Logger } from 'pino';
import { DomainError } from '../postmortems/errors.js';
import type { ApproverCheck } from '../postmortems/ports.js';

export const EVERYONE: ApproverCheck = {
  isApprover: async () => true,
  describe: () => 'everyone',
  check: async () => {},
};

/**
 * SLACK_APPROVERS: user IDs are matched directly; user-group members come from usergroups.users.list
 * (Tier 2, so cached). Free workspaces have no user groups: that failure is explained, not hidden.
 */
export class SlackApprovers implements ApproverCheck {
  private readonly users: Set<string>;
  private readonly groups: string[];
  private cache: { members: Set<string>; at: number } | undefined;
  private inFlight: Promise<Set<string>> | undefined;

  constructor(
    ids: readonly string[],
    private readonly client: webApi.WebClient,
    private readonly logger: Logger,
    private readonly now: () => number = Date.now,
    private readonly ttlMs = 5 * 60_000,
  ) {
    this.users = new Set(ids.filter((id) => !id.startsWith('S')));
    this.groups = ids.filter((id) => id.startsWith('S'));
  }

  async isApprover(userId: string): Promise<boolean> {
    if (this.users.has(userId)) return true;
    if (this.groups.length === 0) return false;
    return (await this.groupMembers()).has(userId);
  }

  describe(): string {
    return [...[...this.users].map((u) => `<@${u}>`), ...this.groups.map((g) => `<!subteam^${g}>`)].join(
      ', ',
    );
  }

  async check(): Promise<void> {
    if (this.groups.length > 0) await this.groupMembers();
  }

  private async groupMembers(): Promise<Set<string>> {
    if (this.cache && this.now() - this.cache.at < this.ttlMs) return this.cache.members;
    this.inFlight ??= this.loadGroups().finally(() => {
      this.inFlight = undefined;
    });
    return this.inFlight;
  }

  private async loadGroups(): Promise<Set<string>> {
    const members = new Set<string>();
    for (const usergroup of this.groups) {
      try {
        const res = await this.client.usergroups.users.list({ usergroup });
        for (const u of res.users ?? []) members.add(u);
      } catch (err) {
        const code = (err as { data?: { error?: string } }).data?.error ?? (err as Error).message;
        const hint =
          code === 'paid_teams_only' || code === 'not_allowed_token_type'
            ? 'user groups need a paid Slack plan: list user IDs (U…) in SLACK_APPROVERS instead'
            : code === 'missing_scope'
              ? 'the app lacks the usergroups:read scope: reinstall it from manifest.yml'
              : code === 'no_such_subteam'
                ? `user group ${usergroup} does not exist`
                : 'try again shortly';
        const message = `SLACK_APPROVERS: cannot read user group ${usergroup} (${code}): ${hint}`;
        this.logger.error({ usergroup, slackError: code }, message);
        // A stale list is better than none while Slack has a hiccup.
        if (this.cache) return this.cache.members;
        throw new DomainError('approvers_unavailable', message);
      }
    }
    this.cache = { members, at: this.now() };
    return members;
  }
}
