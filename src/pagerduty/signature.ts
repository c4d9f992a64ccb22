import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * How webhooks prove they come from PagerDuty. The v3 signature (an HMAC of the body) wins whenever a
 * signing secret is configured: the shared header is then ignored, so it can never stand in for a
 * signature. The shared header alone is the public guide's scheme, kept for migrating from it.
 */
export type WebhookAuth =
  | { scheme: 'signature'; secrets: readonly string[] }
  | { scheme: 'shared_header'; secret: string };

export function webhookAuth(
  signingSecrets: readonly string[],
  sharedSecret: string | undefined,
): WebhookAuth {
  if (signingSecrets.length > 0) return { scheme: 'signature', secrets: signingSecrets };
  if (sharedSecret) return { scheme: 'shared_header', secret: sharedSecret };
  // The configuration loader refuses to start without either; nothing can then be authentic.
  return { scheme: 'signature', secrets: [] };
}

/**
 * The `v1=<hex>` entries of an `X-PagerDuty-Signature` header, decoded. Empty when the header is missing
 * or has no well-formed entry: such a request can be refused before its body is read.
 */
export function signatureCandidates(header: string | undefined): Buffer[] {
  if (!header) return [];
  return header
    .split(',')
    .map((entry) => entry.trim())
    .filter((entry) => entry.startsWith('v1='))
    .map((entry) => entry.slice(3))
    .filter((hex) => /^[0-9a-f]{64}$/i.test(hex))
    .map((hex) => Buffer.from(hex, 'hex'));
}

/**
 * PagerDuty v3 webhook signature: `X-PagerDuty-Signature: v1=<hex>[,v1=<hex>…]`, each an HMAC-SHA256 of the
 * raw body bytes keyed with a subscription secret. During rotation several entries appear; the request is
 * authentic if any entry matches any configured secret.
 */
export function verifyPagerDutySignature(
  rawBody: Buffer,
  header: string | undefined,
  secrets: readonly string[],
): boolean {
  if (secrets.length === 0) return false;
  const provided = signatureCandidates(header);
  if (provided.length === 0) return false;
  let ok = false;
  for (const secret of secrets) {
    const expected = createHmac('sha256', secret).update(rawBody).digest();
    for (const candidate of provided) {
      // No early exit: the time taken does not tell which entry or secret matched.
      if (timingSafeEqual(candidate, expected)) ok = true;
    }
  }
  return ok;
}

/** The public guide's scheme: a shared value in a custom header, compared in constant time. */
export function verifySharedSecret(header: string | undefined, secret: string | undefined): boolean {
  if (!header || !secret) return false;
  const a = createHmac('sha256', 'shared-secret').update(header).digest();
  const b = createHmac('sha256', 'shared-secret').update(secret).digest();
  return timingSafeEqual(a, b);
}

export function signPagerDutyBody(rawBody: Buffer | string, secret: string): string {
  return `v1=${createHmac('sha256', secret).update(rawBody).digest('hex')}`;
}
