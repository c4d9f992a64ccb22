import type { types } from '@slack/bolt';
import { type Config, configWarnings } from '../config/config.js';
import type { HomeView } from '../postmortems/service.js';
import { deadJobsWarning, runSummary } from './replies.js';

/** One line of the Home tab's configuration health: fine, or worth a word. */
export interface HealthLine {
  ok: boolean;
  text: string;
}

const section = (text: string): types.KnownBlock => ({
  type: 'section',
  text: { type: 'mrkdwn', text: text.slice(0, 3000), verbatim: true },
});

/**
 * The bot's Home tab (views.publish): the dead-job warning, recent runs (incident, state, who decided,
 * links) for those who may decide postmortems, and the configuration's health. At most 100 blocks.
 */
export function homeView(home: HomeView, health: readonly HealthLine[]): types.HomeView {
  const blocks: types.KnownBlock[] = [
    { type: 'header', text: { type: 'plain_text', text: 'Postmortems written by Devin' } },
  ];
  const warning = deadJobsWarning(home.deadJobs);
  if (warning) blocks.push(section(warning));
  blocks.push({ type: 'divider' }, section('*Recent runs*'));
  if (home.runs === undefined) {
    blocks.push(
      section(
        'Every channel’s runs are shown to postmortem approvers. `/postmortem status` in a channel shows that channel’s.',
      ),
    );
  } else if (home.runs.length === 0) {
    blocks.push(section('No postmortem runs yet.'));
  } else {
    for (const run of home.runs.slice(0, 40))
      blocks.push(section(`• ${runSummary(run)} · <#${run.channel}>`));
  }
  blocks.push({ type: 'divider' }, section('*Configuration*'));
  blocks.push({
    type: 'context',
    elements: health.slice(0, 10).map((h) => ({
      type: 'mrkdwn' as const,
      text: `${h.ok ? ':white_check_mark:' : ':warning:'} ${h.text}`.slice(0, 3000),
      verbatim: true,
    })),
  });
  return { type: 'home', blocks };
}

/** What the Home tab says about the configuration: each setting people ask about, and start-up's warnings. */
export function configHealth(config: Config): HealthLine[] {
  const lines: HealthLine[] = [];
  const approvers = config.slack.approvers;
  lines.push(
    approvers.length > 0
      ? {
          ok: true,
          text: `Approvers: ${approvers.map((id) => (id.startsWith('S') ? `<!subteam^${id}>` : `<@${id}>`)).join(', ')}`,
        }
      : {
          ok: false,
          text: 'SLACK_APPROVERS is not set: everyone in the workspace may start and approve Devin sessions',
        },
  );
  const auto = config.policy.autoStartPriorities;
  lines.push({
    ok: true,
    text:
      auto.length > 0
        ? `Start by themselves: ${auto.join(', ')}; every other priority asks first`
        : 'Every postmortem asks first',
  });
  lines.push(
    config.pagerduty.apiToken
      ? { ok: true, text: 'PagerDuty API token set: `/postmortem <incident>` and the evidence timeline work' }
      : {
          ok: false,
          text: 'PAGERDUTY_API_TOKEN is not set: `/postmortem <incident>` and PagerDuty evidence are off',
        },
  );
  lines.push({
    ok: true,
    text:
      config.database.kind === 'postgres'
        ? 'Store: Postgres (replicas share it)'
        : 'Store: SQLite (one instance)',
  });
  for (const warning of configWarnings(config)) {
    if (!warning.startsWith('SLACK_APPROVERS')) lines.push({ ok: false, text: warning });
  }
  return lines;
}
