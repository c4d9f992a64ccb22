/**
 * What went wrong below HTTP, in words an operator can act on: which host, and whether it was DNS, a
 * refused connection, TLS, a timeout or a reset. Node's fetch says only "fetch failed"; the reason is in
 * its `cause` (a system error with a code, the host and port it tried).
 */
export type NetworkCause = 'dns' | 'refused' | 'tls' | 'timeout' | 'reset' | 'unreachable' | 'other';

export interface NetworkFailure {
  cause: NetworkCause;
  /** e.g. "DNS lookup of api.devin.ai failed (ENOTFOUND)". */
  text: string;
  code: string | undefined;
}

interface SystemError {
  name?: string;
  code?: string;
  message?: string;
  hostname?: string;
  address?: string;
  port?: number;
  cause?: unknown;
}

const DNS = new Set(['ENOTFOUND', 'EAI_AGAIN', 'EAI_FAIL', 'EAI_NONAME']);
const RESET = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED']);
const TIMEOUT = new Set(['ETIMEDOUT', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT']);
const UNREACHABLE = new Set(['EHOSTUNREACH', 'ENETUNREACH', 'EHOSTDOWN', 'ENETDOWN']);

function isTls(code: string): boolean {
  return (
    code.includes('CERT') ||
    code.startsWith('ERR_TLS') ||
    code.startsWith('ERR_SSL') ||
    code === 'EPROTO' ||
    code === 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY'
  );
}

/** The innermost error that carries a system code (fetch wraps it once, Slack's client once more). */
function rootCause(err: unknown): SystemError | undefined {
  let e = err as SystemError | undefined;
  for (let depth = 0; e && depth < 5; depth++) {
    if (typeof e.code === 'string' && e.code !== 'slack_webapi_request_error') return e;
    e = (e.cause ?? (e as { original?: unknown }).original) as SystemError | undefined;
  }
  return undefined;
}

function isTimeout(err: unknown): boolean {
  let e = err as SystemError | undefined;
  for (let depth = 0; e && depth < 5; depth++) {
    if (e.name === 'TimeoutError') return true;
    e = (e.cause ?? (e as { original?: unknown }).original) as SystemError | undefined;
  }
  return false;
}

/**
 * Describes a failed request to `url`. The host named is the one the connection went to: the proxy's,
 * when the failure was reaching the proxy.
 */
export function describeNetworkFailure(err: unknown, url: string, timeoutMs?: number): NetworkFailure {
  const target = new URL(url);
  const root = rootCause(err);
  const code = root?.code;
  const host = root?.hostname ?? root?.address ?? target.hostname;
  const hostPort = root?.address && root.port ? `${root.address}:${root.port}` : target.host;
  if (isTimeout(err) && !code) {
    const within = timeoutMs ? ` within ${Math.round(timeoutMs / 100) / 10}s` : '';
    return { cause: 'timeout', code: 'TimeoutError', text: `${target.host} did not answer${within}` };
  }
  if (!code) {
    return { cause: 'other', code: undefined, text: `${target.host}: ${errorText(err)}` };
  }
  if (DNS.has(code)) {
    return { cause: 'dns', code, text: `DNS lookup of ${host} failed (${code})` };
  }
  if (code === 'ECONNREFUSED') {
    return { cause: 'refused', code, text: `connection to ${hostPort} refused (${code})` };
  }
  if (RESET.has(code)) {
    return { cause: 'reset', code, text: `connection to ${hostPort} was reset (${code})` };
  }
  if (TIMEOUT.has(code)) {
    return { cause: 'timeout', code, text: `connecting to ${hostPort} timed out (${code})` };
  }
  if (UNREACHABLE.has(code)) {
    return { cause: 'unreachable', code, text: `no route to ${hostPort} (${code})` };
  }
  if (isTls(code)) {
    return {
      cause: 'tls',
      code,
      text: `TLS with ${target.host} failed: ${root?.message ?? code} (${code}); a proxy or gateway that presents its own certificate needs its CA in NODE_EXTRA_CA_CERTS`,
    };
  }
  return { cause: 'other', code, text: `${target.host}: ${root?.message ?? errorText(err)} (${code})` };
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
