import { describe, expect, it } from 'vitest';
import { parseIncidentRef } from '../../src/pagerduty/incident-ref.js';

describe('parseIncidentRef', () => {
  it.each([
    ['Q2K8TBZ1L3KJ7M', 'Q2K8TBZ1L3KJ7M'],
    ['4711', '4711'],
    ['#4711', '4711'],
    ['https://acme.pagerduty.com/incidents/Q2K8TBZ1L3KJ7M', 'Q2K8TBZ1L3KJ7M'],
    ['https://acme.eu.pagerduty.com/incidents/Q2K8TBZ1L3KJ7M/', 'Q2K8TBZ1L3KJ7M'],
    ['<https://acme.pagerduty.com/incidents/PABC123>', 'PABC123'],
    ['<https://acme.pagerduty.com/incidents/PABC123|incident>', 'PABC123'],
    ['  PABC123  ', 'PABC123'],
  ])('%s → %s', (input, expected) => {
    expect(parseIncidentRef(input)).toBe(expected);
  });

  it.each([
    '',
    'hello',
    'status',
    'https://acme.pagerduty.com/services/PSVC1',
    'PABC 123',
    'p1',
    '<!channel>',
  ])('rejects %s', (input) => {
    expect(parseIncidentRef(input)).toBeUndefined();
  });
});
