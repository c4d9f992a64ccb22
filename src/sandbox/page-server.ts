import type { Server, ServerResponse } from 'node:http';
import express, { type Request, type Response } from 'express';
import { z } from 'zod';
import type { Answer } from './channel.js';
import type { ScenarioKind } from './scenarios.js';

/**
 * The demo page: static HTML/CSS/JS, the demo's state as server-sent events, and a small JSON API for what
 * a person does on the page. Listens on loopback only and answers only requests addressed to it (no DNS
 * rebinding, no cross-site form posts: every action is a JSON POST).
 */

export interface DemoControls {
  /** The whole state the page renders, as JSON. */
  snapshot(): string;
  subscribe(listener: () => void): () => void;
  fire(kind: ScenarioKind): Promise<unknown>;
  resolve(incidentId: string): Promise<unknown>;
  click(input: { user: string; actionId: string; ts?: string; privateId?: string }): Promise<Answer>;
  command(input: { user: string; text: string }): Promise<Answer>;
  submit(input: {
    user: string;
    viewId: string;
    values: Record<string, string | number | null>;
  }): Promise<unknown>;
  closeModal(user: string, viewId: string): void;
  step(sessionId: string): { ok: boolean; reason?: string };
  fail(sessionId: string): { ok: boolean; reason?: string };
  setAutoStep(ms: number): void;
}

const userId = z.string().regex(/^[UW][A-Z0-9]{2,}$/, 'expected a Slack user ID');
const schemas = {
  fire: z.object({ kind: z.enum(['p1', 'p3', 'p5', 'early', 'storm']) }),
  resolve: z.object({ incidentId: z.string().min(1).max(64) }),
  click: z
    .object({
      user: userId,
      actionId: z.string().min(1).max(255),
      ts: z.string().max(64).optional(),
      privateId: z.string().max(64).optional(),
    })
    .refine((c) => (c.ts === undefined) !== (c.privateId === undefined), 'expected ts or privateId'),
  command: z.object({ user: userId, text: z.string().max(3000) }),
  submit: z.object({
    user: userId,
    viewId: z.string().min(1).max(64),
    values: z.record(z.string(), z.union([z.string().max(5000), z.number(), z.null()])),
  }),
  close: z.object({ user: userId, viewId: z.string().min(1).max(64) }),
  session: z.object({ sessionId: z.string().min(1).max(64) }),
  speed: z.object({ ms: z.number().int().min(0).max(600_000) }),
};

export interface PageServer {
  url: string;
  close(): Promise<void>;
}

export async function startPageServer(options: {
  port: number;
  pageDir: string;
  controls: DemoControls;
}): Promise<PageServer> {
  const { controls } = options;
  const app = express();
  app.disable('x-powered-by');
  const streams = new Set<ServerResponse>();
  let port = options.port;

  app.use((req, res, next) => {
    const host = req.headers.host ?? '';
    if (host !== `127.0.0.1:${port}` && host !== `localhost:${port}`) {
      res.status(403).type('text/plain').send('The demo answers only on 127.0.0.1 and localhost.');
      return;
    }
    next();
  });
  app.use(express.static(options.pageDir, { index: 'index.html', maxAge: 0 }));

  app.get('/events', (req, res) => {
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
    });
    const send = () => res.write(`event: state\ndata: ${controls.snapshot()}\n\n`);
    send();
    const unsubscribe = controls.subscribe(send);
    const heartbeat = setInterval(() => res.write(': keep-alive\n\n'), 15_000);
    streams.add(res);
    req.on('close', () => {
      clearInterval(heartbeat);
      unsubscribe();
      streams.delete(res);
    });
  });

  const api = express.Router();
  api.use((req, res, next) => {
    if (!req.is('application/json')) {
      res.status(415).json({ error: 'expected a JSON body' });
      return;
    }
    next();
  });
  api.use(express.json({ limit: '64kb' }));
  const route = <S extends z.ZodType>(
    path: string,
    schema: S,
    act: (input: z.infer<S>) => Promise<unknown> | unknown,
  ) => {
    api.post(path, async (req: Request, res: Response) => {
      const parsed = schema.safeParse(req.body);
      if (!parsed.success) {
        res.status(400).json({ error: parsed.error.issues.map((i) => i.message).join('; ') });
        return;
      }
      try {
        const result = (await act(parsed.data)) ?? { ok: true };
        const ok = (result as { ok?: unknown }).ok;
        res.status(ok === false ? 409 : 200).json(result);
      } catch (err) {
        // Unknown incidents and sessions say 404; anything else is the bot or a stand-in failing.
        const status = (err as { status?: unknown }).status === 404 ? 404 : 502;
        res.status(status).json({ error: (err as Error).message });
      }
    });
  };
  route('/pagerduty/fire', schemas.fire, async (b) => {
    // Answer once the deliveries are queued; the page follows them live.
    void controls.fire(b.kind).catch(() => {});
    return { ok: true };
  });
  route('/pagerduty/resolve', schemas.resolve, (b) =>
    controls.resolve(b.incidentId).then(() => ({ ok: true })),
  );
  route('/slack/click', schemas.click, (b) => controls.click(b));
  route('/slack/command', schemas.command, (b) => controls.command(b));
  route('/slack/submit', schemas.submit, (b) => controls.submit(b));
  route('/slack/close', schemas.close, (b) => controls.closeModal(b.user, b.viewId));
  route('/devin/step', schemas.session, (b) => controls.step(b.sessionId));
  route('/devin/fail', schemas.session, (b) => controls.fail(b.sessionId));
  route('/devin/speed', schemas.speed, (b) => controls.setAutoStep(b.ms));
  app.use('/api', api);

  const server: Server = await new Promise((resolve, reject) => {
    const s = app.listen(options.port, '127.0.0.1', (err?: Error) => (err ? reject(err) : resolve(s)));
  });
  const address = server.address();
  port = typeof address === 'object' && address ? address.port : options.port;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of streams) s.end();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
