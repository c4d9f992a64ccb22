import { describe, expect, it } from 'vitest';
import { decidePostmortem, routeOf } from '../../src/postmortems/policy.js';
import { anIncident } from '../helpers/builders.js';

const incident = (priority: string | null, service = { id: 'PS1', name: 'Checkout API' }) =>
  anIncident({ priority, serviceId: service.id, serviceName: service.name });

const policy = {
  autoStartPriorities: ['P1', 'P2'],
  earlyStartPriorities: [],
  neverPriorities: ['P5'],
  defaultChannel: 'CDEFAULT',
  routing: { services: {} },
};

describe('decidePostmortem', () => {
  it('auto-starts the configured priorities and asks for the rest, including no priority', () => {
    expect(decidePostmortem(incident('P1'), policy)).toEqual({ action: 'auto_start', channel: 'CDEFAULT' });
    expect(decidePostmortem(incident('P2'), policy).action).toBe('auto_start');
    expect(decidePostmortem(incident('P3'), policy).action).toBe('ask');
    expect(decidePostmortem(incident(null), policy).action).toBe('ask');
  });

  it('matches labels exactly', () => {
    expect(decidePostmortem(incident('p1'), policy).action).toBe('ask');
    expect(decidePostmortem(incident('P1 '), policy).action).toBe('ask');
    expect(decidePostmortem(incident('SEV-1'), { ...policy, autoStartPriorities: ['SEV-1'] }).action).toBe(
      'auto_start',
    );
  });

  it('uses the service route by ID first, then by name, for the channel and the auto-start set', () => {
    const routing = {
      services: {
        PS1: { channel: 'CBYID', autoStartPriorities: ['P3'] },
        'Checkout API': { channel: 'CBYNAME', autoStartPriorities: [] },
        'Search API': { channel: 'CSEARCH', autoStartPriorities: [] },
      },
    };
    expect(decidePostmortem(incident('P3'), { ...policy, routing })).toEqual({
      action: 'auto_start',
      channel: 'CBYID',
    });
    const search = incident('P1', { id: 'PS2', name: 'Search API' });
    expect(decidePostmortem(search, { ...policy, routing })).toEqual({ action: 'ask', channel: 'CSEARCH' });
    const other = incident('P1', { id: 'PS3', name: 'Other' });
    expect(decidePostmortem(other, { ...policy, routing })).toEqual({
      action: 'auto_start',
      channel: 'CDEFAULT',
    });
  });
});

describe('routeOf', () => {
  const routing = {
    services: {
      PSVC123: { repos: ['acme/by-id'] },
      'Checkout API': { repos: ['acme/by-name'] },
      adhoc: { repos: ['acme/adhoc'] },
    },
  };
  const adHoc = (name: string) => anIncident({ source: 'slack', serviceId: 'adhoc', serviceName: name });

  it('matches an ad-hoc incident’s typed service by name only, never by a service ID', () => {
    expect(routeOf({ routing }, adHoc('Checkout API'))).toEqual({ repos: ['acme/by-name'] });
    expect(routeOf({ routing }, adHoc('PSVC123'))).toEqual({});
    expect(routeOf({ routing }, adHoc('Unrouted'))).toEqual({});
  });

  it('matches a PagerDuty incident by service ID, then name', () => {
    expect(routeOf({ routing }, anIncident({ serviceId: 'PSVC123', serviceName: 'Checkout API' }))).toEqual({
      repos: ['acme/by-id'],
    });
    expect(routeOf({ routing }, anIncident({ serviceId: 'PZZZZZZ', serviceName: 'Checkout API' }))).toEqual({
      repos: ['acme/by-name'],
    });
  });
});
