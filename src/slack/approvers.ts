import type { webApi } from '@slack/bolt';
import type { Logger } from 'pino';
import { errorMessage } from '../errors.js';
import { DomainError } from '../postmortems/errors.js';
import type { ApproverCheck, Authorization } from '../postmortems/ports.js';

/** The workspace (and Enterprise Grid organisation, if any) the bot is installed in, from auth.test. */
export interface Workspace {
  teamId: string;
  enterpriseId: string | undefined;
}

export interface SlackApproversOptions {
  /** SLACK_APPROVERS: user IDs (U…/W…) and user groups (S…); empty means everyone in the workspace. */
  ids: readonly string[];
  client: webApi.WebClient;
  workspace: Workspace;
  logger: Logger;
  now?: () => number;
  /** How long a user's profile and the groups' membership are trusted before asking Slack again. */
  ttlMs?: number;
  /**
   * While Slack keeps failing, group membership older than the TTL is still used for this long, then no
   * longer (fail closed): a removed approver must not keep approving because Slack is having a bad day.
   */
  maxStaleMs?: number;
}

interface Member {
  teamId: string | undefined;
  enterpriseId: string | undefined;
  guest: boolean;
  bot: boolean;
}

/**
 * Who may spend, from Slack's own records. Guests and people from other workspaces or organisations
 * (Slack Connect) may not, unless SLACK_APPROVERS lists them by user ID; then the user groups in
 * SLACK_APPROVERS decide (usergroups.users.list, Tier 2, so cached), or, with none set, everyone in the
 * workspace may. Free workspaces have no user groups: that failure is explained, not hidden.
 */
export class SlackApprovers implements ApproverCheck {
  private readonly users: Set<string>;
  private readonly groups: string[];
  private readonly now: () => number;
  private readonly ttlMs: number;
  private readonly maxStaleMs: number;
  private cache: { members: Set<string>; at: number } | undefined;
  private inFlight: Promise<Set<string>> | undefined;
  private readonly people = new Map<string, { member: Member; at: number }>();

  constructor(private readonly o: SlackApproversOptions) {
    this.users = new Set(o.ids.filter((id) => !id.startsWith('S')));
    this.groups = o.ids.filter((id) => id.startsWith('S'));
    this.now = o.now ?? Date.now;
    this.ttlMs = o.ttlMs ?? 5 * 60_000;
    this.maxStaleMs = o.maxStaleMs ?? 30 * 60_000;
  }

  async authorize(userId: string): Promise<Authorization> {
    // Listed by user ID: an admin chose this person, guest or not, from this organisation or not.
    if (this.users.has(userId)) return { allowed: true };
    const member = await this.member(userId);
    if (member.bot) return { allowed: false, reason: 'bot' };
    if (member.guest) return { allowed: false, reason: 'guest' };
    if (!this.insideOrganisation(member)) return { allowed: false, reason: 'outside' };
    if (this.users.size === 0 && this.groups.length === 0) return { allowed: true };
    if (this.groups.length > 0 && (await this.groupMembers()).has(userId)) return { allowed: true };
    return { allowed: false, reason: 'not_an_approver' };
  }

  describe(): string {
    if (this.users.size === 0 && this.groups.length === 0) return 'everyone in the workspace';
    return [...[...this.users].map((u) => `<@${u}>`), ...this.groups.map((g) => `<!subteam^${g}>`)].join(
      ', ',
    );
  }

  async check(): Promise<void> {
    if (this.groups.length > 0) await this.groupMembers();
  }

  /** Same workspace, or the same Enterprise Grid organisation. */
  private insideOrganisation(m: Member): boolean {
    const { teamId, enterpriseId } = this.o.workspace;
    if (m.teamId === teamId) return true;
    return enterpriseId !== undefined && m.enterpriseId === enterpriseId;
  }

  private async member(userId: string): Promise<Member> {
    const cached = this.people.get(userId);
    if (cached && this.now() - cached.at < this.ttlMs) return cached.member;
    let user: Awaited<ReturnType<webApi.WebClient['users']['info']>>['user'];
    try {
      user = (await this.o.client.users.info({ user: userId })).user;
    } catch (err) {
      const code = (err as { data?: { error?: string } }).data?.error ?? errorMessage(err);
      this.o.logger.error({ userId, slackError: code }, 'cannot look up who is clicking (users.info)');
      throw new DomainError(
        'approvers_unavailable',
        code === 'missing_scope'
          ? 'the app lacks the users:read scope: reinstall it from manifest.yml'
          : `Slack could not say who you are (${code}); try again shortly`,
      );
    }
    const member: Member = {
      teamId: user?.team_id,
      enterpriseId: user?.enterprise_user?.enterprise_id,
      guest: Boolean(user?.is_restricted || user?.is_ultra_restricted),
      bot: Boolean(user?.is_bot),
    };
    this.people.set(userId, { member, at: this.now() });
    if (this.people.size > 10_000) this.people.clear();
    return member;
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
        const res = await this.o.client.usergroups.users.list({ usergroup });
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
        this.o.logger.error({ usergroup, slackError: code }, message);
        // A slightly old list is better than none while Slack has a hiccup, but not for long.
        if (this.cache && this.now() - this.cache.at < this.ttlMs + this.maxStaleMs)
          return this.cache.members;
        if (this.cache) {
          this.o.logger.error(
            { usergroup, ageMs: this.now() - this.cache.at },
            'approver groups could not be refreshed for too long: refusing group members until Slack answers',
          );
        }
        throw new DomainError('approvers_unavailable', message);
      }
    }
    this.cache = { members, at: this.now() };
    return members;
  }
}
