// The demo page: renders the state the demo server streams (server-sent events) and sends what the person
// does back as JSON. Everything is built with DOM calls; no text from Slack, PagerDuty or Devin is ever
// parsed as HTML.
import { renderBlocks } from './blockkit.js';

const $ = (id) => document.getElementById(id);
let state;
let me = localStorage.getItem('demo-user');

function el(tag, className, ...children) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

const clock = (ms) =>
  new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });

function toast(text, kind = 'info') {
  const t = $('toast');
  t.textContent = text;
  t.className = `toast ${kind}`;
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => {
    t.hidden = true;
  }, 6000);
}

async function post(path, body) {
  let res;
  try {
    res = await fetch(`/api/${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
  } catch {
    toast('The demo is not running any more.', 'error');
    return undefined;
  }
  const answer = await res.json().catch(() => ({}));
  if (!res.ok || answer.ok === false) toast(answer.reason ?? answer.error ?? `HTTP ${res.status}`, 'error');
  return answer;
}

/** Keeps a container's children in step with a list, reusing a child whose key has not changed. */
function reconcile(container, items, keyOf, render) {
  const old = new Map([...container.children].filter((c) => c.dataset.key).map((c) => [c.dataset.id, c]));
  const wanted = items.map((item) => {
    const key = keyOf(item);
    const existing = old.get(String(item.id));
    if (existing && existing.dataset.key === key) return existing;
    const node = render(item);
    node.dataset.id = String(item.id);
    node.dataset.key = key;
    return node;
  });
  for (const c of [...container.children]) if (c.dataset.key && !wanted.includes(c)) c.remove();
  wanted.forEach((node, i) => {
    const at = container.children[i];
    if (at !== node) container.insertBefore(node, at ?? null);
  });
}

// --- rendering context for Block Kit ---------------------------------------------------------------------

const ctx = {
  userName: (id) => state?.about.people.find((p) => p.id === id)?.name,
  channelName: (id) => (state?.about.channel.id === id ? state.about.channel.name : undefined),
  onLink(href, event) {
    const session = state?.devin.sessions.find((s) => s.url === href);
    if (session) {
      event.preventDefault();
      highlight(document.querySelector(`.session[data-id="${CSS.escape(session.id)}"]`));
      return;
    }
    const incident = /pagerduty\.com\/incidents\/([A-Z0-9]+)/.exec(href)?.[1];
    if (incident) {
      event.preventDefault();
      highlight(document.querySelector(`.incident[data-id="${CSS.escape(incident)}"]`));
      return;
    }
    if (/^https:\/\/github\.com\/acme\//.test(href)) {
      event.preventDefault();
      toast('This pull request exists only in the demo: the Devin stand-in reported it.');
    }
  },
  onButton() {},
};

function highlight(node) {
  if (!node) return;
  node.scrollIntoView({ behavior: 'smooth', block: 'center' });
  node.classList.remove('flash');
  void node.offsetWidth;
  node.classList.add('flash');
}

/** A click on a Block Kit button: Slack's confirm dialog first when the button has one. */
async function clickButton(element, target, button) {
  if (element.confirm) {
    const ok = await confirmDialog(element.confirm);
    if (!ok) return;
  }
  button.disabled = true;
  await post('slack/click', { user: me, actionId: element.action_id, ...target });
  button.disabled = false;
}

function confirmDialog(confirm) {
  const dialog = $('confirm');
  $('confirm-title').textContent = confirm.title?.text ?? 'Are you sure?';
  $('confirm-text').textContent = confirm.text?.text ?? '';
  $('confirm-ok').textContent = confirm.confirm?.text ?? 'Yes';
  $('confirm-deny').textContent = confirm.deny?.text ?? 'Cancel';
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'confirm'), { once: true });
  });
}

function blocksFor(message, target) {
  return renderBlocks(message.blocks, message.text, {
    ...ctx,
    onButton: (element, _block, button) => clickButton(element, target, button),
  });
}

// --- the channel ------------------------------------------------------------------------------------------

function messageNode(message, replies) {
  const node = el('article', 'message');
  node.dataset.ts = message.ts;
  node.append(
    el('div', 'avatar', 'PB'),
    el(
      'div',
      'message-body',
      el(
        'div',
        'meta',
        el('strong', '', 'postmortem-bot'),
        el('span', 'app-badge', 'APP'),
        el('time', '', clock(message.at)),
        message.edited ? el('span', 'edited', '(edited)') : null,
      ),
      blocksFor(message, { ts: message.ts }),
      replies.length > 0
        ? el(
            'div',
            'thread',
            el('div', 'thread-count', `${replies.length} ${replies.length === 1 ? 'reply' : 'replies'}`),
            ...replies.map((r) => replyNode(r)),
          )
        : null,
    ),
  );
  return node;
}

function replyNode(reply) {
  const node = el('div', 'reply');
  node.dataset.ts = reply.ts;
  node.append(
    el('div', 'avatar small', 'PB'),
    el(
      'div',
      'message-body',
      el('div', 'meta', el('strong', '', 'postmortem-bot'), el('time', '', clock(reply.at))),
      blocksFor(reply, { ts: reply.ts }),
    ),
  );
  return node;
}

function privateNode(p) {
  const node = el('article', 'message private');
  node.append(
    el('div', 'avatar', 'PB'),
    el(
      'div',
      'message-body',
      el(
        'div',
        'meta',
        el('strong', '', 'postmortem-bot'),
        el('span', 'app-badge', 'APP'),
        el('time', '', clock(p.at)),
        el('span', 'only-you', p.user === '*' ? 'Visible to everyone' : 'Only visible to you'),
      ),
      blocksFor(p, { privateId: p.id }),
    ),
  );
  return node;
}

function renderChannel() {
  const { messages, privates } = state.channel;
  const top = messages.filter((m) => !m.threadTs);
  const repliesOf = (ts) => messages.filter((m) => m.threadTs === ts).sort((a, b) => a.seq - b.seq);
  const items = [
    ...top.map((m) => ({ id: m.ts, seq: m.seq, kind: 'message', message: m, replies: repliesOf(m.ts) })),
    ...privates
      .filter((p) => p.user === me || p.user === '*')
      .map((p) => ({ id: p.id, seq: p.seq, kind: 'private', message: p, replies: [] })),
  ].sort((a, b) => a.seq - b.seq);
  const feed = $('feed');
  const atBottom = feed.scrollHeight - feed.scrollTop - feed.clientHeight < 40;
  $('feed-empty').hidden = items.length > 0;
  const list = feed.querySelector('.feed-list') ?? feed.appendChild(el('div', 'feed-list'));
  reconcile(
    list,
    items,
    (i) => JSON.stringify([i.message, i.replies, me, state.about.people]),
    (i) => (i.kind === 'private' ? privateNode(i.message) : messageNode(i.message, i.replies)),
  );
  if (atBottom) feed.scrollTop = feed.scrollHeight;
}

// --- the modal (views.open) -------------------------------------------------------------------------------

function renderModal() {
  const root = $('modal-root');
  const modal = state.channel.modals.find((m) => m.user === me);
  const current = root.querySelector('.modal');
  if (!modal) {
    current?.remove();
    return;
  }
  if (current?.dataset.id !== modal.id) {
    current?.remove();
    root.append(modalNode(modal));
  }
  for (const slot of root.querySelectorAll('.field-error')) {
    slot.textContent = modal.errors[slot.dataset.block] ?? '';
  }
}

function modalNode(modal) {
  const view = modal.view;
  const form = el('form', 'modal-card');
  form.noValidate = true;
  const fields = [];
  for (const block of view.blocks ?? []) {
    if (block.type !== 'input') {
      form.append(renderBlocks([block], '', ctx));
      continue;
    }
    const id = `field-${block.block_id}`;
    const input = inputFor(block.element, id);
    fields.push({ block, input });
    form.append(
      el(
        'div',
        'field',
        el(
          'label',
          '',
          block.label?.text ?? block.block_id,
          block.optional ? el('span', 'muted', ' (optional)') : null,
        ),
        input,
        block.hint ? el('div', 'hint-text', block.hint.text) : null,
        Object.assign(el('div', 'field-error'), { role: 'alert' }),
      ),
    );
    form.lastChild.querySelector('label').htmlFor = id;
    form.lastChild.querySelector('.field-error').dataset.block = block.block_id;
  }
  const close = el('button', 'sk-button', view.close?.text ?? 'Cancel');
  close.type = 'button';
  close.addEventListener('click', () => post('slack/close', { user: me, viewId: modal.id }));
  const submit = el('button', 'sk-button primary', view.submit?.text ?? 'Submit');
  submit.type = 'submit';
  form.append(el('div', 'modal-buttons', close, submit));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const values = {};
    for (const { block, input } of fields) values[block.block_id] = inputValue(block.element, input);
    submit.disabled = true;
    await post('slack/submit', { user: me, viewId: modal.id, values });
    submit.disabled = false;
  });
  const node = el('div', 'modal', el('div', 'modal-title', view.title?.text ?? ''), form);
  node.dataset.id = modal.id;
  node.setAttribute('role', 'dialog');
  node.setAttribute('aria-label', view.title?.text ?? 'Form');
  return node;
}

function inputFor(element, id) {
  let input;
  switch (element?.type) {
    case 'plain_text_input':
      input = element.multiline ? el('textarea') : el('input');
      if (element.max_length) input.maxLength = element.max_length;
      break;
    case 'datetimepicker':
      input = el('input');
      input.type = 'datetime-local';
      break;
    case 'static_select':
      input = el('select', '', el('option', '', 'Choose…'));
      input.firstChild.value = '';
      for (const o of element.options ?? []) {
        const option = el('option', '', o.text?.text ?? o.value);
        option.value = o.value;
        input.append(option);
      }
      break;
    case 'conversations_select': {
      const channel = state.about.channel;
      input = el('select', '', el('option', '', `#${channel.name}`));
      input.firstChild.value = channel.id;
      break;
    }
    default:
      input = el('input');
      input.disabled = true;
      input.placeholder = `${element?.type ?? 'unknown'} is not shown in the demo`;
  }
  input.id = id;
  return input;
}

function inputValue(element, input) {
  if (element?.type === 'datetimepicker') {
    return input.value ? Math.floor(new Date(input.value).getTime() / 1000) : null;
  }
  return input.value === '' ? null : input.value;
}

// --- PagerDuty --------------------------------------------------------------------------------------------

function renderScenarios() {
  const root = $('scenarios');
  if (root.childElementCount > 0) return;
  for (const s of state.scenarios) {
    const button = el('button', 'sk-button scenario', s.label);
    button.type = 'button';
    button.dataset.kind = s.kind;
    button.addEventListener('click', () => post('pagerduty/fire', { kind: s.kind }));
    root.append(el('div', 'scenario-row', button, el('div', 'scenario-expect', s.expect)));
  }
}

function incidentNode(incident) {
  const node = el('div', 'card incident');
  node.append(
    el(
      'div',
      'card-title',
      el('span', `pill priority-${incident.priority}`, incident.priority),
      ` #${incident.number} ${incident.title}`,
    ),
    el(
      'div',
      'card-sub',
      `${incident.service} · `,
      el('span', `status status-${incident.status}`, incident.status),
    ),
  );
  if (incident.kind === 'seeded' || incident.kind === 'p5')
    node.append(el('div', 'card-note', incident.expect));
  if (incident.deliveries.length > 0) {
    node.append(
      el(
        'ul',
        'deliveries',
        ...incident.deliveries.map((d) =>
          el(
            'li',
            '',
            `${d.eventType} → `,
            el('span', typeof d.status === 'number' && d.status < 300 ? 'ok' : 'bad', String(d.status)),
          ),
        ),
      ),
    );
  }
  if (incident.bot.length > 0) {
    node.append(el('ul', 'bot-said', ...incident.bot.map((line) => el('li', '', `bot: ${line}`))));
  }
  for (const note of incident.notes) node.append(el('div', 'card-note', `Note added by the bot: ${note}`));
  if (incident.status === 'acknowledged') {
    const resolve = el('button', 'sk-button primary', 'Resolve');
    resolve.type = 'button';
    resolve.addEventListener('click', () => post('pagerduty/resolve', { incidentId: incident.id }));
    node.append(el('div', 'card-actions', resolve));
  }
  if (incident.kind === 'seeded') {
    const run = el('button', 'sk-button', 'Type /postmortem 1000');
    run.type = 'button';
    run.addEventListener('click', () => {
      $('command').value = `/postmortem ${incident.number}`;
      $('command').focus();
    });
    node.append(el('div', 'card-actions', run));
  }
  return node;
}

function renderIncidents() {
  const incidents = [...state.incidents].reverse();
  reconcile($('incidents'), incidents, (i) => JSON.stringify(i), incidentNode);
}

// --- Devin ------------------------------------------------------------------------------------------------

function sessionNode(session) {
  const node = el('div', 'card session');
  const detail = [session.status, session.statusDetail].filter(Boolean).join(' · ');
  node.append(
    el('div', 'card-title', session.title ?? session.id),
    el('div', 'card-sub', `${session.id} · `, el('span', `status devin-${session.ended ?? 'open'}`, detail)),
    el(
      'ol',
      'steps',
      ...session.steps.map((s) => el('li', s.state, s.label)),
      session.ended === 'failed' ? el('li', 'current failed', 'Failed: Devin reported an error') : null,
      session.ended === 'stopped'
        ? el('li', 'current failed', 'Stopped: the bot terminated the session')
        : null,
    ),
  );
  if (session.waitingFor && !session.ended) node.append(el('div', 'card-note', session.waitingFor));
  if (!session.ended) {
    const next = el('button', 'sk-button primary', 'Next step');
    next.type = 'button';
    next.disabled = Boolean(session.waitingFor);
    next.addEventListener('click', () => post('devin/step', { sessionId: session.id }));
    const fail = el('button', 'sk-button danger', 'Fail');
    fail.type = 'button';
    fail.addEventListener('click', () => post('devin/fail', { sessionId: session.id }));
    node.append(el('div', 'card-actions', next, fail));
  }
  for (const pr of session.pullRequests) node.append(el('div', 'card-note', `Pull request: ${pr}`));
  if (session.messages.length > 0) {
    node.append(
      el(
        'details',
        '',
        el('summary', '', `Message from the bot (${session.messages.length})`),
        ...session.messages.map((m) => el('pre', 'prompt', m)),
      ),
    );
  }
  node.append(
    el(
      'details',
      '',
      el('summary', '', `The prompt the bot sent (${session.prompt.length} characters)`),
      el('pre', 'prompt', session.prompt),
    ),
  );
  return node;
}

function renderDevin() {
  const speed = $('speed');
  if (document.activeElement !== speed) speed.value = String(state.devin.autoStepMs);
  const sessions = [...state.devin.sessions].reverse();
  const root = $('sessions');
  if (sessions.length > 0) root.querySelector('p.muted')?.remove();
  reconcile(root, sessions, (s) => JSON.stringify(s), sessionNode);
}

// --- the rest ---------------------------------------------------------------------------------------------

function renderAbout() {
  const { people, settings, envFile, channel } = state.about;
  const who = $('who');
  if (who.childElementCount === 0) {
    for (const p of people) {
      const option = el('option', '', `${p.name} (${p.approver ? 'approver' : 'not an approver'})`);
      option.value = p.id;
      who.append(option);
    }
  }
  if (!people.some((p) => p.id === me)) me = people[0].id;
  who.value = me;
  const person = people.find((p) => p.id === me);
  $('who-note').textContent = person.approver
    ? `${person.name} is in SLACK_APPROVERS: may approve, skip, start and retry.`
    : `${person.name} is not in SLACK_APPROVERS: the bot refuses, privately, and changes nothing.`;
  $('channel-name').textContent = channel.name;
  $('channel-title').textContent = channel.name;
  $('env-file').textContent = envFile;
  const dl = $('settings');
  dl.replaceChildren(...Object.entries(settings).flatMap(([k, v]) => [el('dt', '', k), el('dd', '', v)]));
  const status = $('bot-status');
  status.textContent = state.bot.running
    ? 'bot running'
    : state.bot.exitCode === null
      ? 'bot starting…'
      : `bot stopped (${state.bot.exitCode})`;
  status.className = `pill ${state.bot.running ? 'ok' : 'bad'}`;
}

function renderLog() {
  const list = $('log');
  const items = state.log.map((line, i) => ({ ...line, id: `${line.at}-${i}-${line.msg}` }));
  reconcile(
    list,
    items.slice(-150),
    (l) => l.id,
    (l) => {
      const fields = Object.entries(l.fields)
        .filter(([k]) => !['component', 'port'].includes(k))
        .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
        .join(' ');
      return el(
        'li',
        `log-${l.level}`,
        el('time', '', clock(l.at)),
        ` ${l.level} `,
        el('strong', '', l.msg),
        fields ? ` ${fields}` : '',
      );
    },
  );
}

function render() {
  renderAbout();
  renderScenarios();
  renderChannel();
  renderModal();
  renderIncidents();
  renderDevin();
  renderLog();
}

$('who').addEventListener('change', (event) => {
  me = event.target.value;
  localStorage.setItem('demo-user', me);
  render();
});
$('speed').addEventListener('change', (event) => post('devin/speed', { ms: Number(event.target.value) }));
$('composer').addEventListener('submit', async (event) => {
  event.preventDefault();
  const line = $('command').value.trim();
  const match = /^\/postmortem(?:\s+(.*))?$/s.exec(line);
  if (!match) {
    toast('The demo knows one command: /postmortem', 'error');
    return;
  }
  await post('slack/command', { user: me, text: match[1] ?? '' });
  $('command').value = '/postmortem ';
});
for (const hint of document.querySelectorAll('.hint')) {
  hint.addEventListener('click', () => {
    $('command').value = hint.dataset.command;
    $('composer').requestSubmit();
  });
}

const events = new EventSource('/events');
events.addEventListener('state', (event) => {
  state = JSON.parse(event.data);
  render();
});
events.addEventListener('error', () => {
  const status = $('bot-status');
  status.textContent = 'demo not reachable';
  status.className = 'pill bad';
});
