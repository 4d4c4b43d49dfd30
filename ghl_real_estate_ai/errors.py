"""Exceptions raised by the service, all under one base.

::

    JorgeError
    ├── ConfigurationError        a setting is missing or wrong; start-up stops
    ├── StorageError              the database cannot do what was asked
    │   └── StorageUnavailableError   the database cannot be reached
    ├── CacheError                the cache or lock backend failed
    │   ├── LockTimeoutError      a lock was not acquired in time
    │   └── LockLostError         a held lock was lost; the work it guarded was stopped
    ├── GHLError                  a GHL API call failed for good
    │   ├── GHLRateLimitError     GHL answered 429 after every retry
    │   └── GHLOutcomeUnknownError    a write may have reached GHL (timeout after sending, 5xx)
    ├── WebhookError              a webhook was refused (signature, shape)
    │   └── SignatureError        the signature is missing, malformed or wrong

The tracing library (``observability/``) stands alone and has its own tree,
``ObservabilityError`` (see ``observability/errors.py``); its ``TraceQueryError``
is re-exported here for the app's code. Catch :data:`APP_ERRORS` to catch both.
"""

from __future__ import annotations

from ghl_real_estate_ai.observability.errors import ObservabilityError, TraceQueryError

__all__ = [
    "APP_ERRORS",
    "CacheError",
    "ConfigurationError",
    "GHLError",
    "GHLOutcomeUnknownError",
    "GHLRateLimitError",
    "JorgeError",
    "LockLostError",
    "LockTimeoutError",
    "SignatureError",
    "StorageError",
    "StorageUnavailableError",
    "TraceQueryError",
    "WebhookError",
]


class JorgeError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigurationError(JorgeError):
    """A setting is missing or invalid; the message names the variable and the fix."""


class StorageError(JorgeError):
    """The database could not do what was asked."""


class StorageUnavailableError(StorageError):
    """The database cannot be reached."""


class CacheError(JorgeError):
    """The cache or lock backend failed."""


class LockTimeoutError(CacheError):
    """A lock was not acquired within its timeout."""


class LockLostError(CacheError):
    """A held lock was lost (lease taken over, lock connection gone): the guarded work was cancelled."""


class GHLError(JorgeError):
    """A GHL API call failed after its retries."""

    def __init__(
        self, message: str, *, status_code: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.retry_after = retry_after
        """Seconds GHL asked us to wait (its ``Retry-After``), when it said."""


class GHLRateLimitError(GHLError):
    """GHL kept answering 429."""


class GHLOutcomeUnknownError(GHLError):
    """A write request left and no clear answer came back (a timeout after sending, a 5xx).

    GHL may have done it: the caller must read GHL back before sending it again.
    """


class WebhookError(JorgeError):
    """A webhook was refused."""


class SignatureError(WebhookError):
    """The webhook signature is missing, malformed, stale or does not verify."""


APP_ERRORS: tuple[type[Exception], ...] = (JorgeError, ObservabilityError)
"""Every error raised on purpose, the app's and the tracing library's: ``except APP_ERRORS``."""
