import { DomainError, type SessionApiCode } from '../postmortems/errors.js';
import type { Session, SessionApi } from '../postmortems/ports.js';
import { DevinApiError, type DevinClient, type DevinSession, NOT_SENT } from './client.js';

/** The domain's SessionApi over the Devin v3 client: sessions in domain terms, errors as SessionApiCode. */
export function devinSessions(client: DevinClient): SessionApi {
  const call = async <T>(fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (err) {
      throw err instanceof DevinApiError ? toDomainError(err) : err;
    }
  };
  return {
    create: (request) => call(async () => toSession(await client.createSession(request))),
    findByTag: (tag) =>
      call(async () => {
        const found = await client.findSessionByTag(tag);
        return found ? toSession(found) : undefined;
      }),
    get: (sessionId) => call(async () => toSession(await client.getSession(sessionId))),
    sendMessage: (sessionId, message) => call(() => client.sendMessage(sessionId, message)),
    terminate: (sessionId) => call(() => client.terminateSession(sessionId)),
  };
}

export function toSession(s: DevinSession): Session {
  return {
    id: s.session_id,
    url: s.url,
    status: s.status ?? null,
    statusDetail: s.status_detail ?? null,
    tags: s.tags ?? [],
    updatedAtMs: typeof s.updated_at === 'number' ? s.updated_at * 1000 : null,
    acusConsumed: typeof s.acus_consumed === 'number' ? s.acus_consumed : null,
    pullRequestUrls: (s.pull_requests ?? []).flatMap((p) => (p.pr_url ? [p.pr_url] : [])),
    structuredOutput: s.structured_output,
  };
}

function toDomainError(err: DevinApiError): DomainError<SessionApiCode> {
  const code = ((): SessionApiCode => {
    switch (err.code) {
      case 'devin_timeout':
        return 'session_api_timeout';
      case 'devin_unreachable':
        return NOT_SENT.has(err.networkCode ?? '') ? 'session_api_not_sent' : 'session_api_connection_lost';
      case 'devin_unavailable':
        return 'session_api_unavailable';
      case 'devin_turned_away':
        return 'session_api_turned_away';
      case 'devin_bad_response':
        return 'session_api_bad_response';
      case 'devin_rate_limited':
        return 'session_api_rate_limited';
      case 'devin_rejected':
        return err.status === 404 ? 'session_not_found' : 'session_api_rejected';
    }
  })();
  return new DomainError(code, err.message, { cause: err, retryAfterMs: err.retryAfterMs });
}
