import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer as createTlsServer } from 'node:tls';
import { describe, expect, it } from 'vitest';
import { describeNetworkFailure } from '../src/network-errors.js';
import { freePort } from './helpers/http-server.js';

/** Real failures of Node's fetch, each described with its host and cause. */
const failure = async (url: string, timeoutMs?: number) => {
  try {
    await fetch(url, timeoutMs ? { signal: AbortSignal.timeout(timeoutMs) } : {});
  } catch (err) {
    return describeNetworkFailure(err, url, timeoutMs);
  }
  throw new Error(`${url} answered`);
};

describe('network failures, named by host and cause', () => {
  it('DNS', async () => {
    expect(await failure('https://api.devin.invalid/v3/self')).toMatchObject({
      cause: 'dns',
      text: 'DNS lookup of api.devin.invalid failed (ENOTFOUND)',
    });
  });

  it('a refused connection', async () => {
    const port = await freePort();
    expect(await failure(`http://127.0.0.1:${port}/`)).toMatchObject({
      cause: 'refused',
      text: `connection to 127.0.0.1:${port} refused (ECONNREFUSED)`,
    });
  });

  it('TLS: a certificate nobody vouches for', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tls-'));
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-keyout',
        join(dir, 'k.pem'),
        '-out',
        join(dir, 'c.pem'),
        '-days',
        '1',
        '-subj',
        '/CN=localhost',
      ],
      { stdio: 'ignore' },
    );
    const server = createTlsServer({
      key: readFileSync(join(dir, 'k.pem')),
      cert: readFileSync(join(dir, 'c.pem')),
    });
    server.on('tlsClientError', () => {});
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    try {
      const f = await failure(`https://127.0.0.1:${port}/`);
      expect(f.cause).toBe('tls');
      expect(f.code).toBe('DEPTH_ZERO_SELF_SIGNED_CERT');
      expect(f.text).toContain(`TLS with 127.0.0.1:${port} failed: self-signed certificate`);
      expect(f.text).toContain('NODE_EXTRA_CA_CERTS');
    } finally {
      server.close();
    }
  });

  it('a timeout, and a connection reset', async () => {
    const sockets: import('node:net').Socket[] = [];
    // Accepts and says nothing: the request times out.
    const silent = createServer((s) => sockets.push(s));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const silentPort = (silent.address() as { port: number }).port;
    // Accepts and hangs up at once: the connection is reset.
    const rude = createServer((s) => s.destroy());
    await new Promise<void>((resolve) => rude.listen(0, '127.0.0.1', resolve));
    const rudePort = (rude.address() as { port: number }).port;
    try {
      expect(await failure(`http://127.0.0.1:${silentPort}/`, 300)).toMatchObject({
        cause: 'timeout',
        text: `127.0.0.1:${silentPort} did not answer within 0.3s`,
      });
      const reset = await failure(`http://127.0.0.1:${rudePort}/`);
      expect(reset.cause).toBe('reset');
      expect(reset.text).toContain(`connection to 127.0.0.1:${rudePort}`);
    } finally {
      for (const s of sockets) s.destroy();
      silent.close();
      rude.close();
    }
  });
});
