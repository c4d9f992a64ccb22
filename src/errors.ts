/**
 * Errors carry a code. Job handlers throw RetryableError for "try again later" (Devin or Slack down,
 * rate-limited) and anything else counts as a bug or a permanent refusal.
 */
export class AppError extends Error {
  constructor(
    readonly code: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

export class RetryableError extends AppError {
  /** Try again after exactly retryAfterMs (a reserved slot), not after the usual growing backoff. */
  readonly exact: boolean;

  constructor(
    code: string,
    message: string,
    /** The earliest time to try again that the other side asked for (Retry-After), if any. */
    readonly retryAfterMs?: number,
    options?: { cause?: unknown; exact?: boolean },
  ) {
    super(code, message, options);
    this.exact = options?.exact ?? false;
  }
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
