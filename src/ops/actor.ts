// Who asked for a change, as the audit trail records it: the admin token's name (or `cli:<system user>`), the
// request's id (the `X-Request-Id` its answer and log lines carry) and where the request came from.
export type Actor = {
  /** The token's name, `anonymous` on a token-less development server, or `cli:<system user>`. */
  name: string;
  /** The HTTP request's id; null for the command line. */
  requestId: string | null;
  /** `http:<client address>` or `cli:<host>`. */
  source: string;
};
