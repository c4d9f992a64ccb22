import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { verifyPagerDutySignature, verifySharedSecret } from '../../src/pagerduty/signature.js';

const body = Buffer.from('{"event":{"id":"01ABC","event_type":"pagey.ping"}}');
const hmac = (secret: string, raw: Buffer = body) => createHmac('sha256', secret).update(raw).digest('hex');

describe('verifyPagerDutySignature (PagerDuty v3 scheme: v1=HMAC-SHA256(secret, raw body) in hex)', () => {
  it('accepts the signature of the raw bytes with the configured secret', () => {
    expect(verifyPagerDutySignature(body, `v1=${hmac('secret-a')}`, ['secret-a'])).toBe(true);
  });

  it('accepts any of several v1 entries (rotation) against any configured secret', () => {
    const header = `v1=${hmac('new-secret')},v1=${hmac('old-secret')}`;
    expect(verifyPagerDutySignature(body, header, ['old-secret'])).toBe(true);
    expect(verifyPagerDutySignature(body, header, ['new-secret'])).toBe(true);
    expect(verifyPagerDutySignature(body, header, ['unrelated', 'new-secret'])).toBe(true);
    expect(
      verifyPagerDutySignature(body, ` v1=${hmac('x')} , v1=${hmac('old-secret')}`, ['old-secret']),
    ).toBe(true);
  });

  it('rejects a wrong secret, other bytes, other schemes, truncated or missing signatures', () => {
    expect(verifyPagerDutySignature(body, `v1=${hmac('secret-b')}`, ['secret-a'])).toBe(false);
    expect(verifyPagerDutySignature(Buffer.from(`${body} `), `v1=${hmac('secret-a')}`, ['secret-a'])).toBe(
      false,
    );
    expect(verifyPagerDutySignature(body, `v2=${hmac('secret-a')}`, ['secret-a'])).toBe(false);
    expect(verifyPagerDutySignature(body, hmac('secret-a'), ['secret-a'])).toBe(false);
    expect(verifyPagerDutySignature(body, `v1=${hmac('secret-a').slice(0, 62)}`, ['secret-a'])).toBe(false);
    expect(verifyPagerDutySignature(body, undefined, ['secret-a'])).toBe(false);
    expect(verifyPagerDutySignature(body, '', ['secret-a'])).toBe(false);
    expect(verifyPagerDutySignature(body, `v1=${hmac('secret-a')}`, [])).toBe(false);
  });

  it('does not accept the buggy documented JS sample’s substring match', () => {
    // A header that merely contains the right signature inside another entry must not pass.
    expect(verifyPagerDutySignature(body, `v1=00${hmac('secret-a')}`, ['secret-a'])).toBe(false);
  });
});

describe('verifySharedSecret (the guide’s X-Webhook-Secret header)', () => {
  it('matches only the exact value', () => {
    expect(verifySharedSecret('shared-value-1234', 'shared-value-1234')).toBe(true);
    expect(verifySharedSecret('shared-value-123', 'shared-value-1234')).toBe(false);
    expect(verifySharedSecret('shared-value-1234', undefined)).toBe(false);
    expect(verifySharedSecret(undefined, 'shared-value-1234')).toBe(false);
  });
});
