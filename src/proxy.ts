import { EnvHttpProxyAgent, setGlobalDispatcher } from 'undici';
import type { ProxyConfig } from './config/config.js';

/**
 * Routes every outgoing call through the configured proxies. Slack's Web API client (v8), the Devin and
 * PagerDuty clients all use Node's fetch, and Node's fetch (Node 20 to 24) ignores HTTPS_PROXY by itself:
 * undici's global dispatcher is what it sends through. Hosts NO_PROXY names are reached directly. Values
 * come from the config, never from process.env here ('' tells undici "none", where undefined would make it
 * read the environment itself).
 */
export function routeThroughProxy(proxy: ProxyConfig): boolean {
  if (!proxy.httpsProxy && !proxy.httpProxy) return false;
  setGlobalDispatcher(
    new EnvHttpProxyAgent({
      httpsProxy: proxy.httpsProxy ?? '',
      httpProxy: proxy.httpProxy ?? '',
      noProxy: proxy.noProxy ?? '',
    }),
  );
  return true;
}

/** The proxy as a log line may show it: scheme, host and port, never its credentials. */
export function describeProxy(proxy: ProxyConfig): Record<string, string> {
  const show = (url: string | undefined) => {
    if (!url) return undefined;
    const u = new URL(url);
    return `${u.protocol}//${u.host}`;
  };
  return Object.fromEntries(
    Object.entries({
      httpsProxy: show(proxy.httpsProxy),
      httpProxy: show(proxy.httpProxy),
      noProxy: proxy.noProxy,
    }).filter((e): e is [string, string] => e[1] !== undefined),
  );
}
