/**
 * Errors thrown by the client. Every API error is an `APIError` carrying the
 * server's `{"error": {type, code, message, param, request_id}}`. The subclass is
 * chosen by the error's `code` where one has its own class (`max_credits_exceeded`,
 * `insufficient_credits`), else by the HTTP status, so callers can
 * `catch (e) { if (e instanceof InsufficientCreditsError) … }` instead of comparing
 * numbers or strings.
 */

/** Base class of everything this package throws. */
export class RivyaError extends Error {
  override name = "RivyaError";
}

/** The body of an error response (`error` member of the API's error shape). */
export interface ErrorBody {
  type?: string;
  code?: string;
  message?: string;
  param?: string | null;
  request_id?: string | null;
}

export class APIError extends RivyaError {
  override name = "APIError";
  /** HTTP status; undefined for an error event inside a stream. */
  readonly status: number | undefined;
  readonly headers: Headers | undefined;
  /** The error object as sent by the server. */
  readonly error: ErrorBody | undefined;
  /** Broad class, e.g. `billing_error`. */
  readonly type: string | undefined;
  /** Stable, machine-readable reason, e.g. `insufficient_credits`. */
  readonly code: string | undefined;
  /** The request parameter at fault, e.g. `input.width`, or null. */
  readonly param: string | null | undefined;
  /** The `X-Request-Id` of the failed request; quote it to support. */
  readonly requestId: string | null | undefined;

  constructor(status: number | undefined, error: ErrorBody | undefined, message: string, headers?: Headers) {
    super(message);
    this.status = status;
    this.headers = headers;
    this.error = error;
    this.type = error?.type;
    this.code = error?.code;
    this.param = error?.param;
    this.requestId = headers?.get("x-request-id") ?? error?.request_id;
  }

  /** The subclass for `status`, built from a parsed error response. */
  static generate(status: number | undefined, body: unknown, text: string, headers?: Headers): APIError {
    const error = (body as { error?: ErrorBody } | undefined)?.error;
    const detail = error && typeof error === "object" ? error : undefined;
    const message =
      (status ? `${status} ` : "") + (detail?.message ?? (text ? text.slice(0, 500) : "status code (no body)"));
    return new (errorClass(status, detail?.code))(status, detail, message, headers);
  }
}

export class BadRequestError extends APIError {
  override name = "BadRequestError";
}
export class AuthenticationError extends APIError {
  override name = "AuthenticationError";
}
/** 402: the work was refused for a billing reason; the subclasses say which. Never retried. */
export class PaymentRequiredError extends APIError {
  override name = "PaymentRequiredError";
}
/** 402 `insufficient_credits`: the wallet cannot cover the work; top it up. */
export class InsufficientCreditsError extends PaymentRequiredError {
  override name = "InsufficientCreditsError";
}
/**
 * 402 `max_credits_exceeded`: the work costs more than the `max_credits` the request allowed.
 * Nothing was reserved and the wallet may well cover it: raise `max_credits` or make the work
 * cheaper (`err.message` says the price). Not an `InsufficientCreditsError`: topping up won't help.
 */
export class MaxCreditsExceededError extends PaymentRequiredError {
  override name = "MaxCreditsExceededError";
}
/**
 * 402 `key_credit_limit_reached`: this API key's credit limit is used up for its window
 * (`err.message` gives the limit, what is used and when it resets). Never retried; the wallet may
 * well have credits: wait for the reset or raise the key's limit.
 */
export class KeyCreditLimitReachedError extends PaymentRequiredError {
  override name = "KeyCreditLimitReachedError";
}
export class PermissionDeniedError extends APIError {
  override name = "PermissionDeniedError";
}
/** 403 `insufficient_scope`: the key lacks the scope the request needs (`err.message` names it). */
export class InsufficientScopeError extends PermissionDeniedError {
  override name = "InsufficientScopeError";
}
/** 403 `model_not_allowed`: the model is outside the key's `models` allow-list. */
export class ModelNotAllowedError extends PermissionDeniedError {
  override name = "ModelNotAllowedError";
}
export class NotFoundError extends APIError {
  override name = "NotFoundError";
}
export class ConflictError extends APIError {
  override name = "ConflictError";
}
export class GoneError extends APIError {
  override name = "GoneError";
}
export class PayloadTooLargeError extends APIError {
  override name = "PayloadTooLargeError";
}
export class UnsupportedMediaTypeError extends APIError {
  override name = "UnsupportedMediaTypeError";
}
export class UnprocessableEntityError extends APIError {
  override name = "UnprocessableEntityError";
}
export class RateLimitError extends APIError {
  override name = "RateLimitError";
}
export class InternalServerError extends APIError {
  override name = "InternalServerError";
}

/** Codes whose errors have a class of their own, whatever the status. */
const CODE_CLASSES: Record<string, typeof APIError> = {
  insufficient_credits: InsufficientCreditsError,
  max_credits_exceeded: MaxCreditsExceededError,
  key_credit_limit_reached: KeyCreditLimitReachedError,
  insufficient_scope: InsufficientScopeError,
  model_not_allowed: ModelNotAllowedError,
};

const STATUS_CLASSES: Record<number, typeof APIError> = {
  400: BadRequestError,
  401: AuthenticationError,
  // Another 402 code (a refusal added later) is a payment refusal, not necessarily "top up".
  402: PaymentRequiredError,
  403: PermissionDeniedError,
  404: NotFoundError,
  409: ConflictError,
  410: GoneError,
  413: PayloadTooLargeError,
  415: UnsupportedMediaTypeError,
  422: UnprocessableEntityError,
  429: RateLimitError,
};

/** The class for an error response: by its `code` when that has a class, else by `status`. */
function errorClass(status: number | undefined, code: string | undefined): typeof APIError {
  const byCode = code !== undefined && Object.hasOwn(CODE_CLASSES, code) ? CODE_CLASSES[code] : undefined;
  if (byCode) return byCode;
  if (status === undefined) return APIError;
  return STATUS_CLASSES[status] ?? (status >= 500 ? InternalServerError : APIError);
}

/** The request never got an HTTP response (DNS, refused, reset), or a stream broke off and could not be resumed. */
export class APIConnectionError extends APIError {
  override name = "APIConnectionError";
  constructor(message = "Connection error.", options?: { cause?: unknown }) {
    super(undefined, undefined, message);
    if (options?.cause !== undefined) (this as { cause?: unknown }).cause = options.cause;
  }
}

/** An attempt took longer than `timeout` (after the last retry). */
export class APIConnectionTimeoutError extends APIConnectionError {
  override name = "APIConnectionTimeoutError";
  constructor(message = "Request timed out.") {
    super(message);
  }
}

/** The caller aborted the request (its `signal`, or `stream.abort()`). Never retried. */
export class APIUserAbortError extends APIError {
  override name = "APIUserAbortError";
  constructor(message = "Request was aborted.") {
    super(undefined, undefined, message);
  }
}

/** `generations.wait()` ran out of time; `generation` is the last state seen. */
export class WaitTimeoutError extends RivyaError {
  override name = "WaitTimeoutError";
  constructor(
    message: string,
    readonly generation: unknown,
  ) {
    super(message);
  }
}

/** A webhook's signature, timestamp or headers did not check out. */
export class InvalidWebhookSignatureError extends RivyaError {
  override name = "InvalidWebhookSignatureError";
}
