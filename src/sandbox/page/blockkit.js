// Block Kit and mrkdwn, rendered the way Slack shows them. Text never becomes HTML: every piece is a DOM
// node built with createElement/createTextNode, so whatever a message says stays text.

const EMOJI = {
  bell: '🔔',
  fast_forward: '⏩',
  hourglass: '⌛',
  hourglass_flowing_sand: '⏳',
  mag: '🔍',
  memo: '📝',
  octagonal_sign: '🛑',
  raising_hand: '🙋',
  warning: '⚠️',
  white_check_mark: '✅',
  x: '❌',
  zzz: '💤',
};

const MARKS = { '*': 'bold', _: 'italic', '~': 'strike' };
const OPENS_AFTER = /[\s([{"'“‘*_~]/;
const CLOSES_BEFORE = /[\s)\]}"'”’.,;:!?*_~]/;

/** Slack's escaped text (&amp; &lt; &gt;) back to what it says. */
export function unescapeSlack(text) {
  return text.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
}

/** `<…>` control sequences of mrkdwn: links, user and channel mentions, groups, specials. */
function entity(inner) {
  const bar = inner.indexOf('|');
  const target = bar >= 0 ? inner.slice(0, bar) : inner;
  const label = bar >= 0 ? inner.slice(bar + 1) : '';
  if (target.startsWith('@')) return { type: 'user', id: target.slice(1), label };
  if (target.startsWith('#')) return { type: 'channel', id: target.slice(1), label };
  if (target.startsWith('!subteam^')) return { type: 'group', id: target.slice('!subteam^'.length), label };
  if (target.startsWith('!')) return { type: 'special', name: target.slice(1).split('^')[0], label };
  return { type: 'link', url: unescapeSlack(target), label: unescapeSlack(label) };
}

/**
 * mrkdwn to a tree: text, bold, italic, strike, code, pre, and the entities above. Formatting may span an
 * entity (`*<url|Incident #7>:*` is a bold link), so the text is read as a list of atoms: single
 * characters, and entities as one atom each.
 */
export function parseMrkdwn(text) {
  const atoms = [];
  let last = 0;
  for (const m of text.matchAll(/<([^<>]*)>/g)) {
    for (const ch of text.slice(last, m.index)) atoms.push(ch);
    atoms.push(entity(m[1]));
    last = m.index + m[0].length;
  }
  for (const ch of text.slice(last)) atoms.push(ch);
  return parseAtoms(atoms, 0, atoms.length);
}

const isChar = (a) => typeof a === 'string';
const raw = (atoms, from, to) =>
  atoms
    .slice(from, to)
    .map((a) => (isChar(a) ? a : a.label || a.url || a.id || ''))
    .join('');

function parseAtoms(atoms, start, end) {
  const out = [];
  let buffer = '';
  const flush = () => {
    if (buffer) out.push({ type: 'text', text: unescapeSlack(buffer) });
    buffer = '';
  };
  let i = start;
  while (i < end) {
    const a = atoms[i];
    if (!isChar(a)) {
      flush();
      out.push(a);
      i++;
      continue;
    }
    if (a === '`' && atoms[i + 1] === '`' && atoms[i + 2] === '`') {
      const close = findSequence(atoms, i + 3, end, '```');
      if (close > 0) {
        flush();
        out.push({ type: 'pre', text: unescapeSlack(raw(atoms, i + 3, close)) });
        i = close + 3;
        continue;
      }
    }
    if (a === '`') {
      const close = findChar(atoms, i + 1, end, '`', false);
      if (close > i + 1) {
        flush();
        out.push({ type: 'code', text: unescapeSlack(raw(atoms, i + 1, close)) });
        i = close + 1;
        continue;
      }
    }
    if (MARKS[a] && opens(atoms, i, start)) {
      const close = closing(atoms, i, end);
      if (close > 0) {
        flush();
        out.push({ type: MARKS[a], children: parseAtoms(atoms, i + 1, close) });
        i = close + 1;
        continue;
      }
    }
    buffer += a;
    i++;
  }
  flush();
  return out;
}

function findSequence(atoms, from, end, seq) {
  for (let j = from; j + seq.length <= end; j++) {
    if ([...seq].every((c, k) => atoms[j + k] === c)) return j;
  }
  return -1;
}

function findChar(atoms, from, end, ch, acrossLines) {
  for (let j = from; j < end; j++) {
    if (atoms[j] === ch) return j;
    if (!acrossLines && atoms[j] === '\n') return -1;
  }
  return -1;
}

function opens(atoms, i, start) {
  const before = i > start ? atoms[i - 1] : ' ';
  const after = atoms[i + 1];
  return (
    isChar(before) && OPENS_AFTER.test(before) && after !== undefined && !(isChar(after) && /\s/.test(after))
  );
}

function closing(atoms, i, end) {
  const mark = atoms[i];
  for (let j = i + 2; j < end; j++) {
    if (atoms[j] === '\n') return -1;
    if (atoms[j] !== mark) continue;
    const before = atoms[j - 1];
    const after = j + 1 < end ? atoms[j + 1] : ' ';
    if (isChar(before) && /\s/.test(before)) continue;
    if (!isChar(after) || CLOSES_BEFORE.test(after)) return j;
  }
  return -1;
}

function emojify(text) {
  return text.replace(/:([a-z0-9_+-]+):/g, (whole, name) => EMOJI[name] ?? whole);
}

function el(tag, className, ...children) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  for (const c of children) node.append(c);
  return node;
}

/** A safe href: http(s) and mailto only. */
function safeUrl(url) {
  try {
    const parsed = new URL(url);
    return ['https:', 'http:', 'mailto:'].includes(parsed.protocol) ? parsed.href : null;
  } catch {
    return null;
  }
}

function renderNodes(nodes, ctx) {
  const fragment = document.createDocumentFragment();
  for (const n of nodes) {
    switch (n.type) {
      case 'text':
        fragment.append(document.createTextNode(emojify(n.text)));
        break;
      case 'bold':
        fragment.append(el('strong', '', renderNodes(n.children, ctx)));
        break;
      case 'italic':
        fragment.append(el('em', '', renderNodes(n.children, ctx)));
        break;
      case 'strike':
        fragment.append(el('s', '', renderNodes(n.children, ctx)));
        break;
      case 'code':
        fragment.append(el('code', '', n.text));
        break;
      case 'pre':
        fragment.append(el('pre', '', n.text));
        break;
      case 'user':
        fragment.append(el('span', 'mention', `@${ctx.userName(n.id) ?? (n.label || n.id)}`));
        break;
      case 'channel':
        fragment.append(el('span', 'mention', `#${n.label || ctx.channelName(n.id) || n.id}`));
        break;
      case 'group':
        fragment.append(el('span', 'mention', `@${n.label || n.id}`));
        break;
      case 'special':
        fragment.append(el('span', 'mention', `@${n.label || n.name}`));
        break;
      case 'link': {
        const href = safeUrl(n.url);
        const label = n.label || n.url;
        if (!href) {
          fragment.append(document.createTextNode(label));
          break;
        }
        const a = el('a', '', label);
        a.href = href;
        a.target = '_blank';
        a.rel = 'noopener noreferrer';
        a.addEventListener('click', (event) => ctx.onLink?.(href, event));
        fragment.append(a);
        break;
      }
    }
  }
  return fragment;
}

export function renderMrkdwn(text, ctx) {
  return renderNodes(parseMrkdwn(String(text ?? '')), ctx);
}

/** A text object: mrkdwn is parsed, plain_text is shown as it is (emoji codes aside). */
export function renderText(object, ctx) {
  if (!object) return document.createTextNode('');
  if (object.type === 'mrkdwn') return renderMrkdwn(object.text, ctx);
  const text = String(object.text ?? '');
  return document.createTextNode(object.emoji === false ? text : emojify(text));
}

function renderButton(element, block, ctx) {
  const button = el(
    'button',
    `sk-button${element.style ? ` ${element.style}` : ''}`,
    renderText(element.text, ctx),
  );
  button.type = 'button';
  button.dataset.actionId = element.action_id ?? '';
  button.addEventListener('click', () => ctx.onButton(element, block, button));
  return button;
}

function renderElement(element, block, ctx) {
  if (element.type === 'button') return renderButton(element, block, ctx);
  return el('span', 'unsupported', `[${element.type ?? 'unknown'} element]`);
}

/** One message's blocks (or its text, when it has none). */
export function renderBlocks(blocks, fallbackText, ctx) {
  const root = el('div', 'blocks');
  if (!Array.isArray(blocks) || blocks.length === 0) {
    root.append(el('div', 'sk-section', el('div', 'sk-text', renderMrkdwn(fallbackText, ctx))));
    return root;
  }
  for (const block of blocks) {
    switch (block.type) {
      case 'section': {
        const section = el('div', 'sk-section');
        const main = el('div', 'sk-section-main');
        if (block.text) main.append(el('div', 'sk-text', renderText(block.text, ctx)));
        if (Array.isArray(block.fields) && block.fields.length > 0) {
          main.append(
            el('div', 'sk-fields', ...block.fields.map((f) => el('div', 'sk-field', renderText(f, ctx)))),
          );
        }
        section.append(main);
        if (block.accessory)
          section.append(el('div', 'sk-accessory', renderElement(block.accessory, block, ctx)));
        root.append(section);
        break;
      }
      case 'context':
        root.append(
          el(
            'div',
            'sk-context',
            ...(block.elements ?? []).map((e) =>
              e.type === 'image'
                ? el('span', 'sk-image-alt', `[${e.alt_text ?? 'image'}]`)
                : el('span', 'sk-context-item', renderText(e, ctx)),
            ),
          ),
        );
        break;
      case 'actions':
        root.append(
          el('div', 'sk-actions', ...(block.elements ?? []).map((e) => renderElement(e, block, ctx))),
        );
        break;
      case 'header':
        root.append(el('div', 'sk-header', renderText(block.text, ctx)));
        break;
      case 'divider':
        root.append(el('hr', 'sk-divider'));
        break;
      case 'image':
        root.append(el('div', 'sk-image-alt', `[image: ${block.alt_text ?? ''}]`));
        break;
      default:
        root.append(el('div', 'unsupported', `[${block.type ?? 'unknown'} block]`));
    }
  }
  return root;
}
