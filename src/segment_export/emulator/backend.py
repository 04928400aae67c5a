"""The emulated service behind the routes: one account's store, its authorization server,
limits, activities, faults and request log, behind one lock.

Every public method takes the lock and first finishes the activities that have come due, so
state advances with the clock however it is observed (API, control endpoint or a white-box test).
"""

from __future__ import annotations

import functools
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, TypeVar
from urllib.parse import parse_qsl, urlsplit

from segment_export.emulator import bulk, custom_fields
from segment_export.emulator.activities import Activity, ActivityKind, ActivityQueue, Outcome
from segment_export.emulator.config import EmulatorConfig
from segment_export.emulator.contacts import contact_post_row, contact_put_fields
from segment_export.emulator.errors import ApiError, OAuthError, RedirectError
from segment_export.emulator.faults import Fault, FaultPlan
from segment_export.emulator.models import (
    PERMISSIONS,
    UNSUBSCRIBED,
    ContactList,
    gc_paused,
    new_id,
    sms_key,
)
from segment_export.emulator.oauth import App, AuthorizationServer, AuthorizeRequest
from segment_export.emulator.paging import next_link
from segment_export.emulator.ratelimit import DailyQuota, SlidingWindow
from segment_export.emulator.requestlog import RequestLog, RequestRecord
from segment_export.emulator.schemas import SeedRequest
from segment_export.emulator.store import Store
from segment_export.emulator.views import account_json, contact_json, list_json

P = ParamSpec("P")
R = TypeVar("R")

_OUTCOME_ERRORS: dict[str, str] = {
    "failed": "The activity failed (injected by the emulator's control API).",
    "timed_out": "The activity timed out (injected by the emulator's control API).",
}
# GET /contacts ?status= values (FACTS.md §6); "active" is every status but unsubscribed.
CONTACT_STATUSES = frozenset({"all", "active", "deleted", *PERMISSIONS})
# What a PUT replaces whole (ContactPutRequest's top-level scalars), and the row keys that are
# not kept in a contact's ``extra``.
_PUT_SCALARS = frozenset({"job_title", "company_name", "birthday_month", "birthday_day",
                          "anniversary"})
_PUT_CORE = frozenset({"email", "first_name", "last_name"})


def _locked(method: Callable[P, R]) -> Callable[P, R]:
    """Run a ``Backend`` method under its lock, after finishing the activities now due."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        backend = args[0]
        assert isinstance(backend, Backend)
        with backend.lock:
            backend._advance()
            return method(*args, **kwargs)

    return wrapper


def _list_input(body: Any) -> tuple[str, bool, str | None]:
    if not isinstance(body, dict):
        raise ApiError.invalid("The body must be a JSON object.")
    name = body.get("name")
    favorite = body.get("favorite", False)
    description = body.get("description")
    if not isinstance(name, str) or not name.strip():
        raise ApiError.invalid("name is required.")
    if len(name) > 255:
        raise ApiError.invalid("name is longer than 255 characters.")
    if not isinstance(favorite, bool):
        raise ApiError.invalid("favorite must be true or false.")
    if description is not None and not isinstance(description, str):
        raise ApiError.invalid("description must be a string.")
    return name, favorite, description


class Backend:
    """One emulated Constant Contact account with its authorization server and limits."""

    def __init__(
        self, config: EmulatorConfig | None = None, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.lock = threading.RLock()
        self._clock = clock
        self.config = self._initial_config = config or EmulatorConfig()
        self.oauth = AuthorizationServer(self.config)
        self.faults = FaultPlan()
        self.request_log = RequestLog(self.config.request_log_limit)
        self._now = clock()
        self._clear()

    def _clear(self) -> None:
        self.store = Store()
        self.activities = ActivityQueue()
        self.window = SlidingWindow(self.config.requests_per_second)
        self.quota = DailyQuota(self.config.daily_quota)
        self.truncations: list[dict[str, Any]] = []
        self._outcomes: deque[tuple[str, Outcome]] = deque()
        self._last_purge = self._now

    # -- time --------------------------------------------------------------------------------

    def _advance(self) -> None:
        now = self._now = self._clock()
        while (activity := self.activities.pop_due(now)) is not None:
            if activity.outcome == "completed":
                bulk.APPLY[activity.kind](activity, self.store)
            else:
                if activity.kind is ActivityKind.LIST_DELETE:
                    activity.payload.deleting = False  # the list stays
                activity.finish(errors=[_OUTCOME_ERRORS[activity.outcome]])  # applies nothing
        if now - self._last_purge > 60:
            self._last_purge = now
            self.activities.purge(now - self.config.activity_retention_seconds)

    def _submit(
        self, kind: ActivityKind, *, payload: Any, status: dict[str, int], client_id: str | None
    ) -> Activity:
        if self.activities.queued >= self.config.max_queued_activities:
            raise ApiError(
                429,
                {
                    "error_key": "too_many_activities",
                    "error_message": "Too many requests. You exceeded "
                    f"{self.config.max_queued_activities:,} queued activities for this user "
                    "account.",
                },
            )
        outcome: Outcome = "completed"
        for index, (wanted, injected) in enumerate(self._outcomes):
            if wanted in (kind.value, "any"):
                outcome = injected
                del self._outcomes[index]
                break
        activity = Activity(
            kind=kind,
            created_at=self._now,
            duration=self.config.activity_seconds,
            outcome=outcome,
            payload=payload,
            status=status,
            client_id=client_id,
        )
        return self.activities.submit(activity)

    # -- control -----------------------------------------------------------------------------

    @_locked
    def reset(self) -> None:
        """Forget everything (apps, tokens, account data, activities, faults, request log) and
        go back to the configuration the backend started with."""
        self.config = self._initial_config
        self.oauth.reset()
        self.oauth.configure(self.config)
        self.request_log.resize(self.config.request_log_limit)
        self.request_log.clear()
        self.faults.clear()
        self._clear()

    @_locked
    def set_config(self, **changes: Any) -> EmulatorConfig:
        """Change limits or speeds at runtime (validated); returns the new configuration."""
        self.config = self.config.with_changes(**changes)
        self.oauth.configure(self.config)
        self.window.set_rate(self.config.requests_per_second)
        self.quota.quota = self.config.daily_quota
        self.request_log.resize(self.config.request_log_limit)
        return self.config

    @_locked
    def seed(self, request: SeedRequest) -> dict[str, Any]:
        """Register apps and add account details, custom fields, lists and contacts; returns
        their ids."""
        for app in request.apps:
            self.oauth.register(
                App(
                    client_id=app.client_id,
                    client_secret=app.client_secret,
                    redirect_uris=tuple(app.redirect_uris),
                    refresh_token_type=app.refresh_token_type,
                    name=app.name,
                    partner=app.partner,
                )
            )
        ids = self.store.seed(
            request, now=self._now, max_custom_fields=self.config.max_custom_fields_per_contact
        )
        return {"apps": [app.client_id for app in request.apps], **ids}

    @_locked
    def add_fault(self, fault: Fault) -> None:
        """Queue a fault for the next matching requests."""
        self.faults.add(fault)

    @_locked
    def take_fault(self, method: str, path: str) -> Fault | None:
        """The fault this request meets, if any (one use consumed)."""
        return self.faults.take(method, path)

    @_locked
    def clear_faults(self) -> None:
        """Drop every waiting fault, request and activity faults alike."""
        self.faults.clear()
        self._outcomes.clear()

    @_locked
    def add_activity_outcome(self, *, outcome: Outcome, count: int, kind: str) -> None:
        """The next ``count`` activities of ``kind`` (or ``any``) end ``failed``/``timed_out``."""
        self._outcomes.extend([(kind, outcome)] * count)

    @_locked
    def expire_tokens(self) -> int:
        """Expire every access token now; refresh tokens keep working. Returns how many."""
        return self.oauth.expire_all(self._now)

    @_locked
    def new_quota_day(self) -> None:
        """Start a new day of the daily quota now, as 00:00 UTC does: every key's count restarts
        (lets tests see a quota reset without waiting for midnight)."""
        self.quota.clear()

    @_locked
    def start_request(self, *, method: str, path: str, query: str) -> RequestRecord:
        """Open a request log record."""
        return self.request_log.start(time=self._now, method=method, path=path, query=query)

    @_locked
    def requests(self, since: int = 0) -> list[dict[str, Any]]:
        """The request log after sequence number ``since``."""
        return [r.to_json() for r in self.request_log.since(since)]

    @_locked
    def clear_requests(self) -> None:
        """Empty the request log."""
        self.request_log.clear()

    @_locked
    def state(self) -> dict[str, Any]:
        """A summary of everything (no member lists: those can hold a million emails)."""
        now = self._now
        states: dict[str, int] = {}
        for activity in self.activities.newest_first():
            state = activity.state(now)
            states[state] = states.get(state, 0) + 1
        store = self.store
        return {
            "config": self.config.model_dump(),
            "account": store.account,
            "apps": sorted(self.oauth.apps),
            "custom_fields": sorted(store.custom_fields),
            "lists": [
                {**list_json(lst, "all"), "deleted": lst.deleted_at is not None}
                for lst in store.lists.values()
            ],
            "contacts_count": len(store.contacts),
            "activities": {"total": len(self.activities), "queued": self.activities.queued,
                           "by_state": states},
            "truncations": list(self.truncations),
            "usage_today": {key: self.quota.used(key, now) for key in sorted(self.oauth.apps)},
            "faults": [f.to_json() for f in self.faults.pending()],
            "activity_faults": [list(item) for item in self._outcomes],
        }

    @_locked
    def list_members(self, list_id: str) -> list[str]:
        """The email addresses (lowercased) of a list's members."""
        members = self.store.get_list(list_id).members
        return sorted(c.address.lower() for c in members if c.address is not None)

    @_locked
    def unsubscribe(self, emails: list[str]) -> list[str]:
        """What a person clicking an email's unsubscribe link does: the contact opts out of the
        account (``unsubscribed``) and leaves every list. Returns the emails found."""
        found = []
        for email in emails:
            contact = self.store.by_email.get(email.strip().lower())
            if contact is None:
                continue
            contact.permission = UNSUBSCRIBED
            contact.opt_out_at = contact.updated_at = self._now
            for lst in self.store.lists.values():
                lst.members.discard(contact)
            found.append(email.strip().lower())
        return found

    @_locked
    def opt_back_in(self, emails: list[str]) -> list[str]:
        """What a person re-subscribing through a sign-up form does: an unsubscribed contact
        becomes ``explicit`` (opted in by the contact) and loses its opt-out date; it joins no
        list. Returns the emails of the contacts that were unsubscribed."""
        found = []
        for email in emails:
            contact = self.store.by_email.get(email.strip().lower())
            if contact is None or contact.permission != UNSUBSCRIBED:
                continue
            contact.permission = "explicit"
            contact.opt_out_at = None
            contact.updated_at = self._now
            found.append(email.strip().lower())
        return found

    @_locked
    def add_by_hand(self, list_id: str, emails: list[str]) -> dict[str, list[str]]:
        """What an account user adding contacts to a list in Constant Contact's UI does: a
        missing contact is created (``implicit``), an existing one is left as it is, and an
        unsubscribed one is not added. Returns the emails ``added`` and ``unsubscribed``."""
        lst = self.store.get_list(list_id)
        added, refused = [], []
        for email in emails:
            key = email.strip().lower()
            contact = self.store.by_email.get(key)
            if contact is None:
                (contact,) = self.store.upsert_rows({key: {"email": email.strip()}},
                                                    now=self._now, permission="implicit")
            if contact.permission == UNSUBSCRIBED:
                refused.append(key)
                continue
            contact.deleted_at = None  # a deleted contact added back by hand comes back ⚠
            lst.members.add(contact)
            added.append(key)
        return {"added": added, "unsubscribed": refused}

    @_locked
    def contacts_snapshot(self) -> list[dict[str, Any]]:
        """Every contact with its fields, permission and list ids (for tests and demos)."""
        lists_of = self.store.lists_by_contact()
        out = []
        for contact in self.store.contacts:
            row: dict[str, Any] = {
                "contact_id": contact.contact_id,
                "email": contact.address,
                "permission_to_send": contact.permission,
                "list_ids": lists_of.get(contact, []),
                "deleted": contact.deleted_at is not None,
            }
            if contact.first_name is not None:
                row["first_name"] = contact.first_name
            if contact.last_name is not None:
                row["last_name"] = contact.last_name
            row.update(contact.extra or {})
            out.append(row)
        return out

    # -- OAuth -------------------------------------------------------------------------------

    @_locked
    def authorize(self, params: Mapping[str, str]) -> AuthorizeRequest:
        """Check an authorize request. An unknown client or redirect URI raises ``OAuthError``
        (shown on a page); any later problem raises ``RedirectError`` (sent back to the app)."""
        app, redirect_uri = self.oauth.check_client(params)
        try:
            return self.oauth.check_request(app, redirect_uri, params)
        except OAuthError as exc:
            raise RedirectError(exc, redirect_uri=redirect_uri, state=params.get("state")) from exc

    @_locked
    def app_name(self, client_id: str) -> str:
        """The display name of a registered app."""
        return self.oauth.apps[client_id].name

    @_locked
    def hold_consent(self, request: AuthorizeRequest) -> str:
        """Keep the request while its consent page is shown."""
        return self.oauth.hold(request, self._now)

    @_locked
    def decide_consent(self, request_id: str, *, allow: bool) -> str:
        """The consent form's answer: the URL to redirect the browser to."""
        return self.oauth.decide(request_id, allow=allow, now=self._now)

    @_locked
    def sign_in(self, request_id: str, *, username: str, password: str) -> AuthorizeRequest:
        """The sign-in form of a ``prompt=login`` request; returns the request, now signed in."""
        self.oauth.sign_in(request_id, username=username, password=password, now=self._now)
        return self.oauth.held(request_id, self._now)

    @_locked
    def approve(self, request: AuthorizeRequest) -> str:
        """Approve at once (auto-approve); returns the redirect URL with code and state."""
        return self.oauth.approve(request, now=self._now)

    @_locked
    def approve_url(self, authorize_url: str, *, allow: bool = True) -> str:
        """Answer the consent page of ``authorize_url`` without a browser."""
        params = dict(parse_qsl(urlsplit(authorize_url).query))
        app, redirect_uri = self.oauth.check_client(params)
        request = self.oauth.check_request(app, redirect_uri, params)
        request.login_required = False  # the caller stands for a user who signs in and answers
        return self.oauth.decide(self.oauth.hold(request, self._now), allow=allow, now=self._now)

    @_locked
    def token(
        self, params: Mapping[str, str], *, basic: tuple[str, str] | None
    ) -> dict[str, object]:
        """The token endpoint."""
        return self.oauth.token(params, basic=basic, now=self._now)

    @_locked
    def partner_token(
        self, params: Mapping[str, str], *, basic: tuple[str, str] | None
    ) -> dict[str, object]:
        """The partner token URL."""
        return self.oauth.partner_token(params, basic=basic, now=self._now)

    @_locked
    def revoke(self, params: Mapping[str, str], *, basic: tuple[str, str] | None) -> None:
        """The revocation endpoint."""
        self.oauth.revoke(params, basic=basic, now=self._now)

    # -- admission: auth, quota, rate, scope -------------------------------------------------

    @_locked
    def admit(self, *, token: str | None, scope: str, record: RequestRecord | None = None) -> str:
        """Let an API request in, or raise the 401/429/403 Constant Contact would answer.

        Returns the API key (client id) it counts against. Only admitted requests count toward
        the per-second window and the daily quota; rejected ones (401, 429) count toward neither.
        """
        now = self._now
        access = self.oauth.authenticate(token, now) if token else None
        if access is None:
            raise ApiError.unauthorized()
        key = access.client_id
        if record is not None:
            record.client_id = key
        if not self.quota.allows(key, now):
            raise ApiError.quota_exceeded()
        if not self.window.allows(key, now):
            raise ApiError.throttled()
        self.quota.record(key, now)
        self.window.record(key, now)
        if self.config.enforce_scopes and scope not in access.scopes:
            raise ApiError.of(403, "forbidden")
        return key

    # -- account and lists -------------------------------------------------------------------

    @_locked
    def account_summary(self, *, extra_fields: set[str]) -> dict[str, Any]:
        """``GET /account/summary``."""
        return account_json(self.store.account, extra_fields)

    @_locked
    def get_custom_fields(
        self, *, query: Mapping[str, str], offset: int, limit: int
    ) -> dict[str, Any]:
        """``GET /contact_custom_fields``, one page (by name)."""
        fields = sorted(self.store.custom_fields.values(), key=lambda f: f.name)
        page = fields[offset : offset + limit]
        more = offset + limit < len(fields)
        return {
            "custom_fields": [custom_fields.field_json(f) for f in page],
            "_links": next_link("/v3/contact_custom_fields", query, offset + limit)
            if more else {},
        }

    @_locked
    def create_custom_field(self, *, body: Any) -> dict[str, Any]:
        """``POST /contact_custom_fields``: 409 when the name is taken, 400 past the limit."""
        field = custom_fields.make_field(body, now=self._now)
        if len(self.store.custom_fields) >= self.config.max_custom_fields:
            raise ApiError.invalid(
                f"The account already has {self.config.max_custom_fields} custom fields.")
        return custom_fields.field_json(self.store.add_custom_field(field))

    @_locked
    def get_custom_field(self, *, custom_field_id: str) -> dict[str, Any]:
        """``GET /contact_custom_fields/{custom_field_id}``."""
        return custom_fields.field_json(self.store.custom_field_by_id(custom_field_id))

    @_locked
    def delete_custom_field(self, *, custom_field_id: str) -> None:
        """``DELETE /contact_custom_fields/{custom_field_id}``: the field and its values go."""
        self.store.remove_custom_field(self.store.custom_field_by_id(custom_field_id))

    @_locked
    def get_lists(
        self,
        *,
        query: Mapping[str, str],
        offset: int,
        limit: int,
        include_count: bool,
        membership: str | None,
        name: str | None,
        status: str,
    ) -> dict[str, Any]:
        """``GET /contact_lists``, one page."""
        lists = [
            lst
            for lst in self.store.lists.values()
            if (status == "all" or (lst.deleted_at is None) == (status == "active"))
            and (name is None or lst.name == name)
        ]
        page = lists[offset : offset + limit]
        body: dict[str, Any] = {"lists": [list_json(lst, membership) for lst in page]}
        if include_count:
            body["lists_count"] = len(lists)
        more = offset + limit < len(lists)
        body["_links"] = next_link("/v3/contact_lists", query, offset + limit) if more else {}
        return body

    @_locked
    def create_list(self, *, body: Any) -> dict[str, Any]:
        """``POST /contact_lists``: 409 when the name is taken."""
        name, favorite, description = _list_input(body)
        store = self.store
        if store.list_named(name) is not None:
            raise ApiError.of(409, "contact_lists.api.conflict", f"A list named {name!r} exists.")
        if len(store.live_lists()) >= self.config.max_lists:
            raise ApiError.invalid(f"The account already has {self.config.max_lists} lists.")
        lst = ContactList(
            list_id=new_id(), name=name, created_at=self._now, description=description,
            favorite=favorite,
        )
        store.lists[lst.list_id] = lst
        return list_json(lst)

    @_locked
    def get_list(self, *, list_id: str, membership: str | None) -> dict[str, Any]:
        """``GET /contact_lists/{list_id}`` (deleted lists too, with ``deleted_at``)."""
        return list_json(self.store.get_list(list_id, deleted_ok=True), membership)

    @_locked
    def update_list(self, *, list_id: str, body: Any) -> dict[str, Any]:
        """``PUT /contact_lists/{list_id}``."""
        lst = self.store.get_list(list_id)
        name, favorite, description = _list_input(body)
        other = self.store.list_named(name)
        if other is not None and other is not lst:
            raise ApiError.of(409, "contact_lists.api.conflict", f"A list named {name!r} exists.")
        lst.name, lst.favorite, lst.description = name, favorite, description
        lst.updated_at = self._now
        return list_json(lst)

    @_locked
    def delete_list(self, *, list_id: str, client_id: str | None) -> dict[str, Any]:
        """``DELETE /contact_lists/{list_id}``: 202 and an activity that deletes it."""
        lst = self.store.get_list(list_id)
        others = [o for o in self.store.live_lists() if o is not lst and not o.deleting]
        if not lst.deleting and not others:
            # An account keeps at least one list (FACTS.md, "Changes since the spec builds");
            # the status and wording are the emulator's ⚠ (the contract lists no 400 here).
            raise ApiError.invalid(
                "The last list of an account cannot be deleted; create another list first.",
                "contact_lists.api.validation.error",
            )
        activity = self._submit(ActivityKind.LIST_DELETE, payload=lst, status={},
                                client_id=client_id)
        lst.deleting = True
        body = activity.to_json(self._now)
        body.pop("status")  # ActivityDeleteListResponse has none
        return body

    # -- contacts ----------------------------------------------------------------------------

    @_locked
    def get_contacts(
        self,
        *,
        query: Mapping[str, str],
        offset: int,
        limit: int,
        email: str | None,
        list_ids: list[str],
        statuses: set[str],
        include: set[str],
        include_count: bool,
        optout_after: float | None = None,
        optout_before: float | None = None,
        updated_after: float | None = None,
        updated_before: float | None = None,
    ) -> dict[str, Any]:
        """``GET /contacts``, one page, in creation order."""
        store = self.store
        page, next_offset, total = store.find_contacts(
            email=email,
            lists=[store.get_list(i) for i in list_ids],
            statuses=statuses,
            offset=offset,
            limit=limit,
            count=include_count,
            optout_after=optout_after,
            optout_before=optout_before,
            updated_after=updated_after,
            updated_before=updated_before,
        )
        lists_of = store.lists_by_contact() if "list_memberships" in include else {}
        body: dict[str, Any] = {
            "contacts": [
                contact_json(c, include=include, list_ids=lists_of.get(c),
                             custom_fields=store.custom_fields)
                for c in page
            ]
        }
        if include_count:
            body["contacts_count"] = total
        body["_links"] = (
            next_link("/v3/contacts", query, next_offset) if next_offset is not None else {}
        )
        return body

    @_locked
    def get_contact(self, *, contact_id: str, include: set[str]) -> dict[str, Any]:
        """``GET /contacts/{contact_id}``."""
        store = self.store
        contact = store.by_id.get(contact_id)
        if contact is None:
            raise ApiError.not_found("contacts", f"Contact {contact_id} was not found.")
        lists_of = store.lists_by_contact() if "list_memberships" in include else {}
        return contact_json(contact, include=include, list_ids=lists_of.get(contact),
                            custom_fields=store.custom_fields)

    @_locked
    def create_contact(self, *, body: Any) -> dict[str, Any]:
        """``POST /contacts``: 409 when the email or SMS number exists, deleted contacts
        included (they persist)."""
        store = self.store
        row, permission, list_ids = contact_post_row(body, store=store, config=self.config)
        existing = store.by_email.get(row["email"].lower()) if "email" in row else None
        if existing is None and "sms_number" in row:
            existing = store.by_sms.get(str(row["sms_number"]))
        if existing is not None:
            raise ApiError.of(409, "contacts.api.conflict", "Validation failed: Email already "
                              f"exists for contact {existing.contact_id}")
        key = row["email"].lower() if "email" in row else sms_key(str(row["sms_number"]))
        (contact,) = store.upsert_rows({key: row}, now=self._now, permission=permission)
        if "sms_number" in row and contact.extra is not None:
            contact.extra.setdefault("sms_permission_to_send", "not_set")
        if permission == UNSUBSCRIBED:
            contact.opt_out_at = self._now
        else:
            for lst in list_ids:
                lst.members.add(contact)
        lists_of = store.lists_by_contact()
        return contact_json(contact, include={"list_memberships", "custom_fields"},
                            list_ids=lists_of.get(contact), custom_fields=store.custom_fields)

    @_locked
    def update_contact(self, *, contact_id: str, body: Any) -> dict[str, Any]:
        """``PUT /contacts/{contact_id}``: a full replace of the top-level fields (left out:
        null), sub-resources sent replace theirs; the id stays and ``updated_at`` moves on, an
        address edit included. 404 for an unknown id, 409 when the address is another
        contact's (deleted ones too: they persist); a deleted contact comes back with
        ``update_source: Account``, and with ``Contact`` is refused ⚠ (the contract: "To
        restore a deleted contact you must specify the update_source as Account")."""
        store = self.store
        contact = store.by_id.get(contact_id)
        if contact is None:
            raise ApiError.not_found("contacts", f"Contact {contact_id} was not found.")
        row, permission, lists = contact_put_fields(body, contact=contact, store=store,
                                                    config=self.config)
        if contact.deleted_at is not None and body.get("update_source") != "Account":
            raise ApiError.invalid("A deleted contact is restored with update_source Account.")
        key = row["email"].lower()
        other = store.by_email.get(key)
        if other is not None and other is not contact:
            raise ApiError.of(409, "contacts.api.conflict", "Validation failed: Email already "
                              f"exists for contact {other.contact_id}")
        old = contact.address.lower() if contact.address is not None else None
        if old != key:
            if old is not None and store.by_email.get(old) is contact:
                del store.by_email[old]
            store.by_email[key] = contact
        contact.address = row["email"]
        contact.first_name = row.get("first_name")
        contact.last_name = row.get("last_name")
        extra = {k: v for k, v in (contact.extra or {}).items() if k not in _PUT_SCALARS}
        extra.update({k: v for k, v in row.items() if k not in _PUT_CORE})
        contact.extra = extra or None
        contact.deleted_at = None
        if permission is not None and permission != contact.permission:
            contact.permission = permission
            contact.opt_out_at = self._now if permission == UNSUBSCRIBED else None
        if lists is not None:
            for lst in store.lists.values():
                lst.members.discard(contact)
        if contact.permission == UNSUBSCRIBED:
            for lst in store.lists.values():
                lst.members.discard(contact)
        else:
            for lst in lists or []:
                lst.members.add(contact)
        contact.updated_at = self._now
        lists_of = store.lists_by_contact()
        return contact_json(contact, include={"list_memberships", "custom_fields"},
                            list_ids=lists_of.get(contact), custom_fields=store.custom_fields)

    @_locked
    def delete_contact(self, *, contact_id: str) -> None:
        """``DELETE /contacts/{contact_id}``: the contact is marked deleted and leaves every
        list; it persists (a create answers 409, an import re-activates it)."""
        contact = self.store.by_id.get(contact_id)
        if contact is None or contact.deleted_at is not None:
            raise ApiError.not_found("contacts", f"Contact {contact_id} was not found.")
        contact.deleted_at = contact.updated_at = self._now
        for lst in self.store.lists.values():
            lst.members.discard(contact)

    @_locked
    def rejections(self, activity_id: str) -> list[dict[str, Any]]:
        """The rows an import refused, with why: what Constant Contact never tells (its
        ``activity_errors`` are free text); for tests."""
        activity = self.activities.get(activity_id)
        if activity is None:
            raise ApiError.not_found("activities", f"Activity {activity_id} was not found.")
        return [{"row": r.row, "email": r.email, "reason": r.reason,
                 "correctable": r.correctable} for r in activity.rejections]

    # -- bulk activities ---------------------------------------------------------------------

    @_locked
    def accept_import(
        self, *, body: bytes, client_id: str | None, record: RequestRecord | None = None
    ) -> dict[str, Any]:
        """``POST /activities/contacts_json_import``: check the request, queue the activity.

        A body over ``max_body_bytes`` is cut there, as Constant Contact documents: only the
        contacts wholly before the cut are imported and nothing says so in the response. The
        cut is recorded in ``truncations`` and on the request log record.
        """
        with gc_paused():
            data, cut = bulk.read_import_body(body, limit=self.config.max_body_bytes)
            truncation: dict[str, Any] | None = None
            if cut:
                truncation = {"time": self._now, "received_bytes": len(body),
                              "imported_bytes": self.config.max_body_bytes,
                              "activity_id": None, "contacts_kept": None}
                self.truncations.append(truncation)
                if record is not None:
                    record.truncated = True
                    record.imported_bytes = self.config.max_body_bytes
            job = bulk.check_import(data, store=self.store, config=self.config)
        activity = self._submit(
            ActivityKind.IMPORT,
            payload=job,
            status={"items_total_count": job.plan.items_total},
            client_id=client_id,
        )
        if truncation is not None:
            truncation["activity_id"] = activity.activity_id
            truncation["contacts_kept"] = job.plan.items_total
        return activity.to_json(self._now)

    @_locked
    def accept_memberships(
        self, *, body: Any, remove: bool, client_id: str | None
    ) -> dict[str, Any]:
        """``POST /activities/add_list_memberships`` or ``remove_list_memberships``."""
        job = bulk.check_memberships(body, remove=remove, store=self.store, config=self.config)
        kind = ActivityKind.REMOVE_MEMBERSHIPS if remove else ActivityKind.ADD_MEMBERSHIPS
        known = len(job.picked or ()) if job.selector == "contact_ids" else 0
        activity = self._submit(
            kind,
            payload=job,
            status={"items_total_count": known, "items_completed_count": 0,
                    "list_count": len(job.targets)},
            client_id=client_id,
        )
        return activity.to_json(self._now)

    @_locked
    def accept_export(self, *, body: Any, client_id: str | None) -> dict[str, Any]:
        """``POST /activities/contact_exports``."""
        job = bulk.check_export(body, store=self.store, config=self.config)
        activity = self._submit(
            ActivityKind.EXPORT,
            payload=job,
            status={"items_total_count": 0, "items_completed_count": 0},
            client_id=client_id,
        )
        return activity.to_json(self._now)

    @_locked
    def export_file(self, *, file_export_id: str) -> bytes:
        """``GET /contact_exports/{file_export_id}``: the CSV of a completed export."""
        activity = self.activities.get(file_export_id)
        if activity is None or activity.kind is not ActivityKind.EXPORT:
            raise ApiError.not_found("contact_exports", f"Export {file_export_id} was not found.")
        if activity.result is None:
            state = activity.state(self._now)
            raise ApiError.not_found(
                "contact_exports", f"Export {file_export_id} has no file (the activity is {state})."
            )
        return activity.result

    @_locked
    def get_activity(self, *, activity_id: str) -> dict[str, Any]:
        """``GET /activities/{activity_id}``."""
        activity = self.activities.get(activity_id)
        if activity is None or (
            activity.created_at < self._now - self.config.activity_retention_seconds
        ):
            raise ApiError.not_found("activities", "Resource not found for the activity_id "
                                     "provided.")
        return activity.to_json(self._now)

    @_locked
    def get_activities(
        self, *, query: Mapping[str, str], offset: int, limit: int, state: str | None
    ) -> dict[str, Any]:
        """``GET /activities``: the account's activities, newest first."""
        now = self._now
        horizon = now - self.config.activity_retention_seconds
        activities = [
            a for a in self.activities.newest_first()
            if a.created_at >= horizon and (state is None or a.state(now) == state)
        ]
        page = activities[offset : offset + limit]
        more = offset + limit < len(activities)
        return {
            "activities": [a.to_json(now) for a in page],
            "_links": next_link("/v3/activities", query, offset + limit) if more else {},
        }
