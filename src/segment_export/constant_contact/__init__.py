"""The only code that talks to Constant Contact: OAuth, pacing, retries, batching and endpoints."""

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
    DatabaseRateLimiter,
    InProcessRateLimiter,
    RateLimiter,
    RedisRateLimiter,
    make_rate_limiter,
    next_utc_midnight,
)
from segment_export.constant_contact.tokens import (
    DatabaseTokenStore,
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
    "DatabaseRateLimiter",
    "DatabaseTokenStore",
    "ImportBatch",
    "InMemoryTokenStore",
    "InProcessRateLimiter",
    "OAuthClient",
    "RateLimiter",
    "RedisRateLimiter",
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
    "make_rate_limiter",
    "map_http_error",
    "new_state",
    "next_utc_midnight",
    "parse_callback",
    "save_token",
]
