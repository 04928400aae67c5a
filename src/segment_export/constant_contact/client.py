"""The typed Constant Contact V3 client: every API call of the product, paced and retried."""

from __future__ import annotations

import csv
import io
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, BinaryIO, Literal, TypeVar
from urllib.parse import urljoin, urlsplit

import httpx
import orjson
from pydantic import BaseModel

from segment_export import __version__
from segment_export.constant_contact.auth import utc_now
from segment_export.constant_contact.batching import HARD_MAX_BYTES, MAX_LIST_IDS
from segment_export.constant_contact.http_errors import UnauthorizedError, map_http_error
from segment_export.constant_contact.models import (
    AccountSummary,
    Activity,
    Contact,
    ContactList,
    CustomField,
)
from segment_export.constant_contact.ratelimit import RateLimiter
from segment_export.constant_contact.retry import (
    DEFAULT_BACKOFF_BASE,
    DEFAULT_BACKOFF_CAP,
    DEFAULT_MAX_ATTEMPTS,
    retrying,
)
from segment_export.constant_contact.tokens import TokenProvider
from segment_export.errors import DataError, FatalError, RetriableError, SegmentExportError

log = logging.getLogger(__name__)

MAX_CONTACT_IDS = 500
MAX_CONTACT_LIST_FILTER = 25
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)

RequestHook = Callable[[str, str, int | None, int, float], None]
"""``on_request(method, path, status or None on a transport error, bytes_sent, seconds)``."""

MembershipCount = Literal["all", "active"]
_M = TypeVar("_M", bound=BaseModel)


class ActivityWaitCancelled(SegmentExportError):
    """``should_cancel`` asked to stop waiting; the activity itself goes on at Constant Contact."""

    hint = "The run was cancelled while Constant Contact was still processing an activity."


class ActivityTimeoutError(RetriableError):
    """An activity did not finish within the wait; it may still finish later."""


def _unbind(response: httpx.Response) -> None:
    """Break the cycle httpx leaves between a response read whole and its stream (which
    refers back to the response), so the response goes when its last user drops it.

    Otherwise it waits for a pass of the garbage collector, with its request and the request's
    body: a run's import bodies (up to 4 MB each) piled up three or more deep while sending.
    """
    if response.is_closed:  # read whole: the stream has nothing left to give
        response.stream = httpx.ByteStream(response.content)


class ConstantContactClient:
    """Typed calls to the Constant Contact V3 API for one connection.

    Every request (including each retry and each activity poll) first passes ``limiter``, then
    carries a bearer token from ``auth``. Retriable faults (429 ``throttled``, 5xx, timeouts,
    connection errors) are retried up to ``max_retries`` times with capped exponential backoff
    and jitter, each wait logged; a 401 triggers one forced token refresh and one immediate
    retry; 429 ``quota_exceeded`` raises QuotaExhaustedError at once. Thread-safe: worker
    threads may share one client.

    POSTs that create activities are retried too. If an answer is lost after Constant Contact
    accepted the request, the retry creates a second activity; for imports that is harmless
    (an import is an idempotent upsert) and the Activity returned is the one whose answer
    arrived: record its ``activity_id``, not a guess.
    """

    def __init__(
        self,
        *,
        api_url: str,
        auth: TokenProvider,
        limiter: RateLimiter,
        transport: httpx.BaseTransport | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_ATTEMPTS - 1,
        backoff_base: float = DEFAULT_BACKOFF_BASE,
        backoff_cap: float = DEFAULT_BACKOFF_CAP,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = utc_now,
        on_request: RequestHook | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self._base = self.api_url + "/"
        parts = urlsplit(self.api_url)
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._base_path = parts.path
        self._auth = auth
        self._limiter = limiter
        self._http = httpx.Client(
            transport=transport,
            timeout=timeout,
            headers={"Accept": "application/json", "User-Agent": f"segment-export/{__version__}"},
        )
        self.max_retries = max_retries
        self._backoff = (backoff_base, backoff_cap)
        self._sleep = sleep
        self._monotonic = monotonic
        self._now = now
        self._on_request = on_request

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close()

    def __enter__(self) -> ConstantContactClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- account and lists -------------------------------------------------------------------

    def account_summary(self) -> AccountSummary:
        """The account the connection reaches (``GET /account/summary``)."""
        return self._model(AccountSummary, self._send("GET", "account/summary"))

    def list_contact_lists(
        self,
        *,
        include_membership_count: MembershipCount | None = None,
        name: str | None = None,
        limit: int = 500,
    ) -> list[ContactList]:
        """Every contact list of the account (all pages; ``name`` matches a full name exactly)."""
        params: dict[str, Any] = {"limit": limit}
        if include_membership_count:
            params["include_membership_count"] = include_membership_count
        if name is not None:
            params["name"] = name
        return list(self._pages("contact_lists", params, "lists", ContactList))

    def get_contact_list(
        self, list_id: str, *, include_membership_count: MembershipCount | None = None
    ) -> ContactList:
        """One list; NotFoundError if it does not exist."""
        params = {"include_membership_count": include_membership_count}
        response = self._send("GET", f"contact_lists/{list_id}", params=_clean(params))
        return self._model(ContactList, response)

    def create_contact_list(
        self, name: str, *, description: str | None = None, favorite: bool = False
    ) -> ContactList:
        """A new list; FatalError (409) if the name is taken (list names are unique)."""
        body: dict[str, Any] = {"name": name, "favorite": favorite}
        if description is not None:
            body["description"] = description
        return self._model(ContactList, self._send_json("POST", "contact_lists", body))

    def list_custom_fields(self) -> list[CustomField]:
        """The account's custom fields (``GET /contact_custom_fields``, all pages)."""
        return list(self._pages("contact_custom_fields", {"limit": 100}, "custom_fields",
                                CustomField))

    # -- contacts ----------------------------------------------------------------------------

    def find_contacts(
        self,
        *,
        email: str | None = None,
        lists: Sequence[str] | None = None,
        status: str | Sequence[str] | None = None,
        include: Sequence[str] | None = None,
        optout_after: datetime | None = None,
        limit: int = 500,
    ) -> Iterator[Contact]:
        """Contacts matching the filters, following ``_links.next`` page by page.

        ``lists`` takes at most 25 list ids; ``status`` one or more of all, active, deleted,
        not_set, pending_confirmation, temp_hold, unsubscribed; ``include`` sub-resources such
        as ``list_memberships``; ``optout_after`` (aware) only contacts that opted out since
        then. Pages are fetched lazily as the iterator advances.
        """
        if lists is not None and len(lists) > MAX_CONTACT_LIST_FILTER:
            raise DataError(f"find_contacts filters on at most {MAX_CONTACT_LIST_FILTER} lists")
        params: dict[str, Any] = {
            "email": email,
            "lists": ",".join(lists) if lists else None,
            "status": status if isinstance(status, str) or status is None else ",".join(status),
            "include": ",".join(include) if include else None,
            "optout_after": _iso(optout_after, "optout_after") if optout_after is not None
            else None,
            "limit": limit,
        }
        return self._pages("contacts", _clean(params), "contacts", Contact)

    def updated_contacts(
        self,
        *,
        updated_after: datetime,
        updated_before: datetime | None = None,
        lists: Sequence[str] | None = None,
        max_pages: int | None = None,
        limit: int = 500,
    ) -> list[tuple[str, str | None]] | None:
        """``(contact_id, email)`` of every contact of the account updated since
        ``updated_after`` (aware; and until ``updated_before``), deleted ones included, all
        pages: an address edit keeps a contact's id, and this is how to see which ids it
        moved. ``lists`` (at most 25): only their members. The email is None for a contact
        without one.

        With ``max_pages``, the first page asks for the count and None is returned (after that
        one request) when the listing would take more pages; a listing that has no count is
        stopped, also returning None, when it reaches more pages.
        """
        if lists is not None and len(lists) > MAX_CONTACT_LIST_FILTER:
            raise DataError(f"updated_contacts filters on at most {MAX_CONTACT_LIST_FILTER} "
                            "lists")
        params: dict[str, Any] | None = _clean({
            "updated_after": _iso(updated_after, "updated_after"),
            "updated_before": _iso(updated_before, "updated_before")
            if updated_before is not None else None,
            "lists": ",".join(lists) if lists else None,
            "status": "all",
            "include_count": "true" if max_pages is not None else None,
            "limit": limit,
        })
        found: list[tuple[str, str | None]] = []
        target: str | None = "contacts"
        pages = 0
        while target is not None:
            if max_pages is not None and pages >= max_pages:
                return None
            response = self._send("GET", target, params=params)
            pages += 1
            data = orjson.loads(response.content)
            if pages == 1 and max_pages is not None:
                count = data.get("contacts_count")
                if isinstance(count, int) and -(-count // limit) > max_pages:
                    return None
            for item in data.get("contacts") or []:
                contact = Contact.model_validate(item)
                found.append((contact.contact_id, contact.email))
            target = ((data.get("_links") or {}).get("next") or {}).get("href")
            params = None  # the next href carries the cursor and the original filters
        return found

    # -- bulk activities ---------------------------------------------------------------------

    def import_contacts(self, body: bytes) -> Activity:
        """Start a ``contacts_json_import`` with a body made by ``iter_import_bodies``.

        The body is sent byte for byte, so what was measured is what is sent. A body of 4 MB or
        more is refused here (Constant Contact would silently drop its tail).
        """
        if len(body) >= HARD_MAX_BYTES:
            raise DataError(
                f"An import body of {len(body)} bytes would be truncated by Constant Contact",
                nbytes=len(body),
            )
        response = self._send(
            "POST",
            "activities/contacts_json_import",
            content=body,
            headers={"Content-Type": "application/json"},
        )
        return self._model(Activity, response)

    def add_list_memberships(self, contact_ids: Sequence[str], list_ids: Sequence[str]) -> Activity:
        """Add up to 500 contacts (by id) to 1..50 lists, as an activity."""
        return self._membership("add_list_memberships", contact_ids, list_ids)

    def remove_list_memberships(
        self, contact_ids: Sequence[str], list_ids: Sequence[str]
    ) -> Activity:
        """Remove up to 500 contacts (by id) from 1..50 lists, as an activity.

        Sent as raw JSON: the contract says ``maxItems: 0`` for these arrays, so generated SDKs
        refuse every real request; the documented limits (500 ids, 50 lists) are checked here.
        This removes list memberships only; it never unsubscribes anyone.
        """
        return self._membership("remove_list_memberships", contact_ids, list_ids)

    def create_contact_export(
        self,
        *,
        list_ids: Sequence[str] | None = None,
        contact_ids: Sequence[str] | None = None,
        status: str | None = None,
        fields: Sequence[str] | None = None,
    ) -> Activity:
        """Start a CSV export of contacts; when it completes, ``results_href`` names the file."""
        if list_ids is not None and len(list_ids) > MAX_LIST_IDS:
            raise DataError(f"An export filters on at most {MAX_LIST_IDS} lists")
        if contact_ids is not None and len(contact_ids) > MAX_CONTACT_IDS:
            raise DataError(f"An export names at most {MAX_CONTACT_IDS} contact ids")
        body: dict[str, Any] = _clean(
            {
                "list_ids": list(list_ids) if list_ids is not None else None,
                "contact_ids": list(contact_ids) if contact_ids is not None else None,
                "status": status,
                "fields": list(fields) if fields is not None else None,
            }
        )
        return self._model(Activity, self._send_json("POST", "activities/contact_exports", body))

    def download_contact_export(self, href: str) -> Iterator[dict[str, str]]:
        """The rows of a finished export's CSV file, fetched from ``href`` exactly as given.

        The file is downloaded (with retries) before this returns; the rows are parsed lazily.
        """
        response = self._send("GET", href, headers={"Accept": "text/csv"})
        return iter(csv.DictReader(io.StringIO(response.text, newline="")))

    def download_contact_export_csv(self, href: str) -> bytes:
        """A finished export's CSV file as bytes, fetched from ``href`` exactly as given (for
        a columnar parse: a million rows as dicts cost seconds and hundreds of MB)."""
        return self._send("GET", href, headers={"Accept": "text/csv"}).content

    def download_contact_export_csv_into(self, href: str, into: BinaryIO) -> int:
        """:meth:`download_contact_export_csv` written into ``into`` as it arrives (a million
        contacts' CSV is ~70 MB: never held whole, nor twice while it is joined); ``into`` is
        emptied before each attempt. Returns the bytes written."""
        self._send("GET", href, headers={"Accept": "text/csv"}, into=into)
        return into.tell()

    def get_activity(self, activity_id: str) -> Activity:
        """An activity's current state and counts; NotFoundError after its 10 days are over."""
        return self._model(Activity, self._send("GET", f"activities/{activity_id}"))

    def list_activities(self, *, state: str | None = None, limit: int = 50) -> Iterator[Activity]:
        """The account's activities of the last 10 days, ``limit`` per page, all pages."""
        params = _clean({"state": state, "limit": limit})
        return self._pages("activities", params, "activities", Activity)

    def wait_for_activity(
        self,
        activity_id: str,
        *,
        poll_interval: float = 2.0,
        timeout: float = 3600.0,
        should_cancel: Callable[[], bool] | None = None,
    ) -> Activity:
        """Poll an activity (through the limiter) until it is completed, failed, cancelled or
        timed out at Constant Contact, and return it; the caller judges the final state.

        Raises ActivityWaitCancelled when ``should_cancel()`` turns true between polls, and
        ActivityTimeoutError (retriable) if it is still running after ``timeout`` seconds.
        """
        deadline = self._monotonic() + timeout
        while True:
            activity = self.get_activity(activity_id)
            if activity.is_terminal:
                return activity
            if should_cancel is not None and should_cancel():
                raise ActivityWaitCancelled(
                    f"Stopped waiting for activity {activity_id}",
                    activity_id=activity_id,
                    state=activity.state,
                )
            if self._monotonic() + poll_interval > deadline:
                raise ActivityTimeoutError(
                    f"Activity {activity_id} is still {activity.state} after {timeout:.0f} s",
                    activity_id=activity_id,
                    state=activity.state,
                    percent_done=activity.percent_done,
                )
            self._sleep(poll_interval)

    # -- plumbing ----------------------------------------------------------------------------

    def _membership(
        self, endpoint: str, contact_ids: Sequence[str], list_ids: Sequence[str]
    ) -> Activity:
        if not 1 <= len(contact_ids) <= MAX_CONTACT_IDS:
            raise DataError(
                f"{endpoint} takes 1 to {MAX_CONTACT_IDS} contact ids, not {len(contact_ids)}"
            )
        if not 1 <= len(list_ids) <= MAX_LIST_IDS:
            raise DataError(f"{endpoint} takes 1 to {MAX_LIST_IDS} list ids, not {len(list_ids)}")
        body = {"source": {"contact_ids": list(contact_ids)}, "list_ids": list(list_ids)}
        return self._model(Activity, self._send_json("POST", f"activities/{endpoint}", body))

    def _pages(
        self, path: str, params: Mapping[str, Any] | None, key: str, model: type[_M]
    ) -> Iterator[_M]:
        target: str | None = path
        while target is not None:
            response = self._send("GET", target, params=params)
            data = orjson.loads(response.content)
            for item in data.get(key) or []:
                yield model.model_validate(item)
            target = ((data.get("_links") or {}).get("next") or {}).get("href")
            params = None  # the next href carries the cursor and the original filters

    def _model(self, model: type[_M], response: httpx.Response) -> _M:
        return model.model_validate_json(response.content)

    def _send_json(self, method: str, path: str, body: Any) -> httpx.Response:
        return self._send(
            method, path, content=orjson.dumps(body), headers={"Content-Type": "application/json"}
        )

    def _resolve(self, target: str) -> str:
        """An absolute URL for an endpoint path or a ``_links`` href, never off the API's origin.

        Constant Contact's hrefs are paths from the host root that include ``/v3``; when the API
        sits under a longer path (a proxy, the emulator) they are mapped under it.
        """
        if target.startswith(("http://", "https://")):
            parts = urlsplit(target)
            if f"{parts.scheme}://{parts.netloc}" != self._origin:
                # The bearer token must never travel to another host.
                raise FatalError("Refusing to follow a link off the API host", href=target)
            return target
        if target.startswith("/"):
            version = "/" + self._base_path.rsplit("/", 1)[-1]
            if self._base_path.endswith(version) and target.startswith(version + "/"):
                return self._origin + self._base_path[: -len(version)] + target
            return self._origin + target
        return urljoin(self._base, target)

    def _send(
        self,
        method: str,
        target: str,
        *,
        params: Mapping[str, Any] | None = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        into: BinaryIO | None = None,
    ) -> httpx.Response:
        url = self._resolve(target)
        path = urlsplit(url).path
        refreshed = [False]  # one forced refresh per call, however many retries it takes
        base, cap = self._backoff
        response: httpx.Response | None = None
        for attempt in retrying(
            what=f"{method} {path}",
            max_attempts=self.max_retries + 1,
            base=base,
            cap=cap,
            sleep=self._sleep,
        ):
            with attempt:
                response = self._attempt(method, url, path, params, content, headers, refreshed,
                                         into)
        assert response is not None
        return response

    def _attempt(
        self,
        method: str,
        url: str,
        path: str,
        params: Mapping[str, Any] | None,
        content: bytes | None,
        headers: Mapping[str, str] | None,
        refreshed: list[bool],
        into: BinaryIO | None = None,
    ) -> httpx.Response:
        while True:
            self._limiter.acquire()
            token = self._auth.access_token()
            sent = len(content) if content else 0
            started = self._monotonic()
            request_headers = {**(headers or {}), "Authorization": f"Bearer {token}"}
            try:
                if into is None:
                    response = self._http.request(method, url, params=params, content=content,
                                                  headers=request_headers)
                else:
                    response = self._streamed(method, url, params, content, request_headers,
                                              into)
            except httpx.TransportError as exc:
                self._report(method, path, None, sent, started)
                error = map_http_error(exc, now=self._now())
                assert error is not None
                raise error from exc
            self._report(method, path, response.status_code, sent, started)
            if into is None:
                _unbind(response)
            error = map_http_error(response, now=self._now())
            if error is None:
                return response
            if isinstance(error, UnauthorizedError) and not refreshed[0]:
                log.info("%s %s answered 401: refreshing the access token once", method, path)
                # A refresh that fails for a passing reason raises RetriableError and leaves the
                # flag unset, so the retried attempt may still refresh once.
                self._auth.force_refresh(token)
                refreshed[0] = True
                continue
            raise error

    def _streamed(self, method: str, url: str, params: Mapping[str, Any] | None,
                  content: bytes | None, headers: Mapping[str, str],
                  into: BinaryIO) -> httpx.Response:
        """One request whose successful body goes into ``into`` (emptied first) a chunk at a
        time; an error's body is read whole, for its mapping."""
        request = self._http.build_request(method, url, params=params, content=content,
                                           headers=headers)
        response = self._http.send(request, stream=True)
        try:
            if response.is_success:
                into.seek(0)
                into.truncate()
                for chunk in response.iter_bytes(1 << 20):
                    into.write(chunk)
            else:
                response.read()
        finally:
            response.close()
        return response

    def _report(
        self, method: str, path: str, status: int | None, sent: int, started: float
    ) -> None:
        if self._on_request is not None:
            self._on_request(method, path, status, sent, self._monotonic() - started)


def _iso(moment: datetime, name: str) -> str:
    if moment.tzinfo is None:
        raise DataError(f"{name} must be an aware datetime")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _clean(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


__all__ = [
    "DEFAULT_TIMEOUT",
    "MAX_CONTACT_IDS",
    "ActivityTimeoutError",
    "ActivityWaitCancelled",
    "ConstantContactClient",
    "RequestHook",
]
