import { z } from 'zod';
import { DomainError, type IncidentSourceCode } from '../postmortems/errors.js';
import type { IncidentNotes, IncidentSource } from '../postmortems/ports.js';
import { PagerDutyApiError, type PagerDutyClient } from './rest-client.js';

/** The domain's IncidentSource over PagerDuty's REST API; errors as IncidentSourceCode. */
export function pagerDutyIncidents(client: PagerDutyClient): IncidentSource {
  return { getIncident: (ref) => translated(() => client.getIncident(ref)) };
}

/** Notes on incidents, written as the PagerDuty user PAGERDUTY_FROM_EMAIL names. */
export function pagerDutyNotes(client: PagerDutyClient, fromEmail: string): IncidentNotes {
  return {
    addNote: (incidentId, content) => translated(() => client.addNote(incidentId, content, fromEmail)),
  };
}

async function translated<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof PagerDutyApiError) {
      throw new DomainError(codeOf(err), err.message, { cause: err });
    }
    if (err instanceof z.ZodError || err instanceof SyntaxError) {
      throw new DomainError('incident_source_bad_response', 'PagerDuty answered with an unexpected body', {
        cause: err,
      });
    }
    throw err;
  }
}

function codeOf(err: PagerDutyApiError): IncidentSourceCode {
  switch (err.code) {
    case 'pagerduty_not_found':
      return 'incident_not_found';
    case 'pagerduty_forbidden':
      return 'incident_source_forbidden';
    case 'pagerduty_rate_limited':
      return 'incident_source_rate_limited';
    case 'pagerduty_unavailable':
      return 'incident_source_unavailable';
  }
}
