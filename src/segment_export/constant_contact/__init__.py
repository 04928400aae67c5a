"""The only code that talks to Constant Contact: OAuth, pacing, retries, batching and endpoints.

It imports nothing of the state store, the metrics or the exports: where tokens live and which
rate budget requests share are protocols (``TokenStore``, ``RateLimiter``) implemented in
``segment_export.db`` and ``segment_export.pacing``; metrics listen through callbacks."""

from segment_export.constant_contact.auth import (
    DEFAULT_SCOPES,
    AuthorizationDeniedError,
    OAuthClient,
    Token,
    build_authorize_url,
    make_pkce_pair,
    new_state,
    parse_callback,
)
from segment_export.constant_contact.batching import (
    DEFAULT_MAX_BYTES,
    MAX_CONTACTS_PER_IMPORT,
    ImportBatch,
    ImportFrame,
    iter_import_bodies,
)
from segment_export.constant_contact.client import (
    MAX_CONTACT_IDS,
    ActivityTimeoutError,
    ActivityWaitCancelled,
    ConstantContactClient,
    RequestHook,
)
from segment_export.constant_contact.http_errors import UnauthorizedError, map_http_error
from segment_export.constant_contact.models import (
    AccountSummary,
    Activity,
    ActivityStatus,
    Contact,
    ContactList,
    CustomField,
)
from segment_export.constant_contact.ratelimit import (
    InProcessRateLimiter,
    RateLimiter,
    next_utc_midnight,
)
from segment_export.constant_contact.tokens import (
    InMemoryTokenStore,
    RefreshingTokenProvider,
    StaticTokenProvider,
    StoredToken,
    TokenProvider,
    TokenStore,
    save_token,
)

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_SCOPES",
    "MAX_CONTACTS_PER_IMPORT",
    "MAX_CONTACT_IDS",
    "AccountSummary",
    "Activity",
    "ActivityStatus",
    "ActivityTimeoutError",
    "ActivityWaitCancelled",
    "AuthorizationDeniedError",
    "ConstantContactClient",
    "Contact",
    "ContactList",
    "CustomField",
    "ImportBatch",
    "ImportFrame",
    "InMemoryTokenStore",
    "InProcessRateLimiter",
    "OAuthClient",
    "RateLimiter",
    "RefreshingTokenProvider",
    "RequestHook",
    "StaticTokenProvider",
    "StoredToken",
    "Token",
    "TokenProvider",
    "TokenStore",
    "UnauthorizedError",
    "build_authorize_url",
    "iter_import_bodies",
    "make_pkce_pair",
    "map_http_error",
    "new_state",
    "next_utc_midnight",
    "parse_callback",
    "save_token",
]
