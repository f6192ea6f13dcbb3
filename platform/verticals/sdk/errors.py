"""The failure a service raises with its answer in it: an HTTP status, a stable machine code and a
message that says what to do. The API's exception handler (`verticals.api.errors`) turns every
one into the same body; the portal shows its message. It lives in the SDK, the lowest layer both
plugins and core import, so that a plugin's InputError is one too."""

from __future__ import annotations


class ServiceError(Exception):
    """Work refused or failed, answered with `status` and `code` (e.g. 400 `invalid`, 503
    `inference_restarted`). `message` is shown to the caller as it is; `field` names the part of
    the request it is about (the API prefixes the message with it, OpenAI's `param`); `details`
    goes into the API body; `retry_after` (seconds) becomes a Retry-After header."""

    status: int = 500
    code: str = "server_error"
    field: str | None = None
    retry_after: int | None = None

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        field: str | None = None,
        details: dict | None = None,
        retry_after: int | None = None,
    ):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        if field is not None:
            self.field = field
        if retry_after is not None:
            self.retry_after = retry_after
        self.details = details
