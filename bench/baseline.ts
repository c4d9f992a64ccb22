import type { AddressInfo } from 'node:net';
import express from 'express';

/** The baseline: a bare Express 5 app with express.json() and an empty POST route, nothing else. */
const app = express();
app.use(express.json({ limit: '1mb' }));
app.get('/healthz', (_req, res) => {
  res.json({ status: 'ok' });
});
app.post('/webhooks/pagerduty', (_req, res) => {
  res.status(202).json({ status: 'accepted' });
});
const server = app.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
  process.stdout.write(
    `${JSON.stringify({ msg: 'baseline listening', port: (server.address() as AddressInfo).port })}\n`,
  );
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
