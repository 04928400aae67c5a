"""The stateful test's rig: a model of what two exports' lists must hold, and the actions that
change the world under them (profiles join and leave, people unsubscribe or add contacts by
hand, faults armed, runs carried out here or in a real CLI process killed with SIGKILL).

Shared by ``tests/exports/test_stateful_engine.py`` (Hypothesis picks the actions) and
``python -m bench.stateful`` (a seeded random walk picks them, for thousands of steps).

What the product promises, as the model holds it (``docs/exports.md``, ``exports/mirror.py``):

- after a run that succeeded, every exportable member (in the segment, consenting, a valid
  address) who has not unsubscribed is on the list, with the values the profile has now;
- an unsubscribed contact is never on the list again (an unsubscribe takes it off every list,
  and no run of ours may bring it back);
- a contact a person added by hand stays, unless this export delivered it too (it was an
  exportable member at a run) and it has left since: mirror mode then removes it;
- mirror mode: nobody else is on the list (leavers this export delivered are taken off, and
  nothing this export did not deliver was ever added); add/update mode: leavers stay, and
  nobody who was never delivered or added by hand is on the list;
- every successful run's counts add up, to the model's own numbers;
- a run that failed (re-authorization needed, retries used up) removed no current member and
  no hand-added contact, and added nobody who was not a member.

A failed or killed run may have delivered some members and (mirror) removed some leavers; the
model then holds those as *maybe* and settles each by what the list shows once that is no longer
ambiguous, so a later check is exact again.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from segment_export.constant_contact.tokens import CONNECTED
from segment_export.db.models import Connection, Export, Run
from segment_export.definitions.exports import ExportSpec, create_export
from segment_export.exports.runs import RunRequest, request_run, run_to_completion
from segment_export.profiles import DuckDBProfileStore
from segment_export.segments.refresh import refresh_segments
from tests.exports.faults_support import Zygote, cli_env, deps, reauthorize
from tests.world import World

POOL = 16  # profiles per sequence
BROKEN = frozenset({5, 12})  # their addresses are invalid: rejected before sending
SHOUTING = frozenset({3, 10})  # upper-case addresses: the same contacts as lower-case ones
BATCH = 3  # contacts per import: a run of ~8 members sends three or four
IMPORT_PATH = "/v3/activities/contacts_json_import"
REMOVE_PATH = "/v3/activities/remove_list_memberships"
READ_TIMEOUT = 0.5  # the client's, in runs here; a "timeout" fault answers later than this

FaultKind = Literal["429", "5xx", "drop", "timeout", "activity", "removal", "expired",
                    "rotated"]
# "activity": an import activity fails or times out; "removal": a mirror removal's does.
FAULT_KINDS: tuple[FaultKind, ...] = ("429", "5xx", "drop", "timeout", "activity", "removal",
                                      "expired", "rotated")
WHERE = {"import": IMPORT_PATH, "remove": REMOVE_PATH, "poll": "/v3/activities",
         "lookup": "/v3/contacts", "any": "/v3"}


@dataclass(frozen=True)
class FaultPlan:
    """One fault to arm; which fields matter depends on ``kind``."""

    kind: FaultKind
    count: int = 1
    status: int = 503
    where: str = "any"  # a key of WHERE
    when: Literal["before", "during", "after"] = "before"
    outcome: Literal["failed", "timed_out"] = "failed"


@dataclass(frozen=True)
class RunPlan:
    """One run: of which export, full or incremental, here or in a CLI process killed after
    ``kill_after`` API requests (or, ``kill_in_removal``, once it asked for a mirror removal)
    plus ``kill_delay`` s, resumed here or by another CLI."""

    export: int  # 0: the mirror export, 1: the add/update one
    full: bool = False
    kill: bool = False
    kill_after: int = 0
    kill_delay: float = 0.0
    resume_in_cli: bool = False
    kill_in_removal: bool = False


class Violation(AssertionError):
    """A list or a run broke what the product promises."""

    def __init__(self, kind: str, detail: str, emails: Iterable[str] = ()) -> None:
        self.kind = kind
        self.emails = sorted(emails)
        super().__init__(f"{kind}: {detail}" + (f" {self.emails[:8]}" if self.emails else ""))


@dataclass
class Person:
    cid: int
    email: str
    in_segment: bool
    consent: bool
    first_name: str

    @property
    def key(self) -> str:
        return self.email.lower()

    @property
    def valid(self) -> bool:
        return "@" in self.email

    @property
    def exportable(self) -> bool:
        return self.in_segment and self.consent and self.valid

    def row(self) -> dict[str, Any]:
        return {"customer_id": self.cid, "email": self.email, "first_name": self.first_name,
                "last_name": "Doe", "country": "DE" if self.in_segment else "FR",
                "consent": self.consent}


@dataclass
class ListModel:
    """One export and what the model knows of its list."""

    name: str
    mode: Literal["mirror", "add_update"]
    list_id: str
    export: Export
    ours: set[str] = field(default_factory=set)  # delivered by this export, not removed
    maybe: set[str] = field(default_factory=set)  # perhaps delivered, or perhaps removed
    hand: set[str] = field(default_factory=set)  # on the list by a person's hand, not ours


@dataclass
class Tally:
    """What a rig did and found, for the benchmark's report."""

    sequences: int = 0
    steps: int = 0
    runs: int = 0
    runs_failed: int = 0
    recoveries: int = 0
    kills: int = 0
    kills_mid_run: int = 0
    resumes_in_cli: int = 0
    full_resyncs: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    actions: Counter[str] = field(default_factory=Counter)
    checks: int = 0
    violations: Counter[str] = field(default_factory=Counter)  # lost, extra, resubscribed...
    problems: list[str] = field(default_factory=list)


class Rig:
    """The world one sequence of actions runs in, and the checks after each run."""

    def __init__(self, world: World, zygote: Zygote, tally: Tally | None = None) -> None:
        self.world = world
        self.zygote = zygote
        self.tally = tally or Tally()
        world.settings = world.settings.model_copy(update={"import_batch_contacts": BATCH})
        world.control.set_config(activity_seconds=0.05)
        # A segment's fields are checked against the profiles: one row before the first.
        world.load_profiles([Person(0, "nobody@example.com", False, False, "-").row()])
        self.segment_id = world.segment("stateful", "country = 'DE'")
        self.sequence = 0
        self.people: list[Person] = []
        self.lists: list[ListModel] = []
        self.unsubscribed: set[str] = set()
        self.outsiders: list[str] = []  # hand-added addresses of no profile
        self._renames = 0

    # -- sequences ---------------------------------------------------------------------------

    def begin(self) -> None:
        """A fresh sequence: new people (new addresses), two new lists and exports."""
        self.sequence += 1
        self.tally.sequences += 1
        q = self.sequence
        self.people = []
        for i in range(1, POOL + 1):
            local = f"q{q}-p{i}"
            email = (f"{local}.example.com" if i in BROKEN else
                     f"{local.upper()}@EXAMPLE.com" if i in SHOUTING else f"{local}@example.com")
            self.people.append(Person(i, email, in_segment=i % 2 == 0, consent=i % 7 != 0,
                                      first_name=f"P{i}"))
        self.unsubscribed = set()
        self.outsiders = []
        names = {f"q{q} mirror": "mirror", f"q{q} add/update": "add_update"}
        ids = self.world.control.seed(lists=list(names)).lists
        self.lists = []
        with self.world.sessions.begin() as session:
            for name, mode in names.items():
                export = create_export(session, actor=self.world.admin, spec=ExportSpec(
                    name=name, connection_id=self.world.connection.id, list_id=ids[name],
                    mapping={"email": "email", "first_name": "first_name"},
                    segment_ids=[self.segment_id], consent_field="consent",
                    mode=mode))  # type: ignore[arg-type]
                self.lists.append(ListModel(name, mode, ids[name], export))  # type: ignore[arg-type]
        self._load()

    def end(self) -> None:
        """Leave the world usable by the next sequence: no fault waiting, a working grant."""
        self.world.control.clear_faults()
        self._recover_grant()

    # -- actions on profiles and on the account ------------------------------------------------

    def join_or_leave(self, index: int) -> None:
        self.tally.steps += 1
        person = self.people[index % POOL]
        person.in_segment = not person.in_segment
        self.tally.actions["join" if person.in_segment else "leave"] += 1
        self._load()

    def toggle_consent(self, index: int) -> None:
        self.tally.steps += 1
        person = self.people[index % POOL]
        person.consent = not person.consent
        self.tally.actions["consent" if person.consent else "withdraw consent"] += 1
        self._load()

    def rename(self, index: int) -> None:
        self.tally.steps += 1
        person = self.people[index % POOL]
        self._renames += 1
        person.first_name = f"{person.first_name.split('-')[0]}-{self._renames}"
        self.tally.actions["rename"] += 1
        self._load()

    def unsubscribe(self, pick: int) -> None:
        """Someone unsubscribes (from an email's link): off every list, for good."""
        self.tally.steps += 1
        candidates = sorted({p.key for p in self.people if p.valid} | set(self.outsiders))
        email = candidates[pick % len(candidates)]
        if self.world.control.unsubscribe([email]):  # only a contact can unsubscribe
            self.unsubscribed.add(email)
            self.tally.actions["unsubscribe"] += 1

    def add_by_hand(self, export: int, pick: int, member: bool) -> None:
        """A user adds an address to a list in Constant Contact: a segment member not on the
        list yet, or someone the segment never held."""
        self.tally.steps += 1
        model = self.lists[export % 2]
        on = self.world.control.list_members(model.list_id)
        if member:
            candidates = sorted(p.key for p in self.people if p.valid and p.key not in on
                                and p.key not in self.unsubscribed)
        else:
            candidates = []
        if not candidates:
            email = f"q{self.sequence}-hand{len(self.outsiders) + 1}@elsewhere.test"
            self.outsiders.append(email)
        else:
            email = candidates[pick % len(candidates)]
        if self.world.control.add_by_hand(model.list_id, [email]):
            model.hand.add(email)
            self.tally.actions["add by hand"] += 1

    def arm(self, plan: FaultPlan) -> None:
        """Make the next matching requests (or activities) fail."""
        self.tally.steps += 1
        control = self.world.control
        if plan.kind == "429":
            control.inject_fault(kind="status", status=429, count=plan.count,
                                 path_prefix=WHERE[plan.where])
        elif plan.kind == "5xx":
            control.inject_fault(kind="status", status=plan.status, count=plan.count,
                                 path_prefix=WHERE[plan.where])
        elif plan.kind == "drop":
            when = plan.when if plan.where in ("import", "remove") else "before"
            control.inject_fault(kind="drop", when=when, count=plan.count,
                                 path_prefix=WHERE[plan.where])
        elif plan.kind == "timeout":
            # Accepted, then answered after the client stopped waiting: it sends again.
            control.inject_fault(kind="slow", when="after", delay=READ_TIMEOUT * 2,
                                 path_prefix=IMPORT_PATH if plan.where != "remove"
                                 else REMOVE_PATH)
        elif plan.kind in ("activity", "removal"):
            kind = ("remove_list_memberships" if plan.kind == "removal"
                    else "contacts_json_import")
            if plan.outcome == "failed":
                control.fail_activity(plan.count, kind=kind)
            else:
                control.time_out_activity(plan.count, kind=kind)
        elif plan.kind == "expired":
            control.expire_tokens()
        else:
            # The refresh rotates the token and its answer is lost: the retry reuses the old
            # one, Constant Contact revokes the chain, and the connection needs re-authorizing.
            control.inject_fault(kind="drop", when="after", path_prefix="/oauth2")
            control.expire_tokens()
        self.tally.faults[plan.kind] += 1

    # -- runs --------------------------------------------------------------------------------

    def run(self, plan: RunPlan) -> Run:
        """Run an export as planned; if it fails, check what it left, recover (faults off,
        re-authorize) and run it again; check the list after the run that succeeded."""
        model = self.lists[plan.export % 2]
        self.tally.steps += 1
        self.tally.runs += 1
        self.tally.full_resyncs += plan.full
        with self.world.sessions.begin() as session:
            run_id = request_run(session, actor=self.world.admin, export=model.export,
                                 request=RunRequest(full_resync=plan.full)).id
        done = self._kill_and_resume(run_id, plan) if plan.kill else run_to_completion(
            run_id, deps=deps(self.world, read_timeout=READ_TIMEOUT), backoff=0.01)
        if done.status in ("succeeded", "succeeded_with_rejections"):
            self.check_success(model, done)
            return done
        if done.status != "failed" or done.error_kind == "internal":
            raise Violation("run broke", f"{model.name}: {done.status} "
                                         f"({done.error_kind}): {done.message}")
        self.tally.runs_failed += 1
        self.check_failure(model)
        self.tally.recoveries += 1
        self.world.control.clear_faults()
        self._recover_grant()
        with self.world.sessions.begin() as session:
            again = request_run(session, actor=self.world.admin, export=model.export).id
        done = run_to_completion(again, deps=deps(self.world), backoff=0.01)
        if done.status not in ("succeeded", "succeeded_with_rejections"):
            raise Violation("no recovery", f"{model.name}: the run after recovery ended "
                                           f"{done.status}: {done.message}")
        self.check_success(model, done)
        return done

    def _kill_and_resume(self, run_id: str, plan: RunPlan) -> Run:
        world = self.world
        env = cli_env(world, batch=BATCH)
        world.store.close()  # DuckDB: one process at a time holds the profile store
        try:
            since = world.control.requests()[-1].seq
            worker = self.zygote.start(["runs", "resume", run_id], env)
            deadline = time.monotonic() + 30
            exited = None
            while (not self._kill_point(since, plan) and time.monotonic() < deadline
                   and (exited := self.zygote.exit_code(worker)) is None):
                time.sleep(0.003)
            if exited is None:
                time.sleep(plan.kill_delay)
                os.kill(worker, signal.SIGKILL)  # the zygote reaps it: the pid is still its
                exited = self.zygote.wait(worker)
            killed = exited == -signal.SIGKILL
            self.tally.kills += killed
            status = self._run(run_id).status
            self.tally.kills_mid_run += killed and status in ("queued", "running")
            if plan.resume_in_cli:
                self.tally.resumes_in_cli += 1
                self.zygote.wait(self.zygote.start(["runs", "resume", run_id], env))
        finally:
            world.store = DuckDBProfileStore(world.settings.profiles_path)
        run = self._run(run_id)
        if run.status in ("queued", "running"):  # killed, and not resumed by a CLI yet
            run = run_to_completion(run_id, deps=deps(world, read_timeout=READ_TIMEOUT),
                                    backoff=0.01)
        return run

    def _kill_point(self, since: int, plan: RunPlan) -> bool:
        api = [r for r in self.world.control.requests(since) if r.path.startswith("/v3/")]
        if plan.kill_in_removal:
            return any(r.path == REMOVE_PATH for r in api)
        return len(api) >= plan.kill_after

    def _run(self, run_id: str) -> Run:
        with self.world.sessions() as session:
            run = session.get(Run, run_id)
            assert run is not None
            return run

    # -- checks ------------------------------------------------------------------------------

    def exportable(self) -> set[str]:
        return {p.key for p in self.people if p.exportable}

    def check_success(self, model: ListModel, run: Run) -> None:
        """After a run that succeeded: the list is exactly what the model says."""
        self.tally.checks += 1
        on = self.world.control.list_members(model.list_id)
        members = self.exportable()
        unsub = self.unsubscribed
        must_on = (members | model.hand) - unsub
        if model.mode == "add_update":
            must_on |= model.ours - unsub
            may_on = must_on | (model.maybe - unsub)
        else:
            # Added by hand, perhaps delivered too, then left: perhaps removed. Any other
            # leaver is off (removed, or never added).
            doubtful = (model.maybe & model.hand) - members
            must_on -= doubtful
            may_on = must_on | (doubtful - unsub)
        self._compare(model, on, must_on, may_on, "after a successful run")
        self._check_counts(model, run)
        self._check_values(model)
        # Settle what was ambiguous by what the list shows.
        if model.mode == "mirror":
            model.hand = {e for e in model.hand - members if e in on}
            model.ours = set(members)
        else:
            model.ours |= members | {e for e in model.maybe if e in on}
        model.maybe = set()

    def check_failure(self, model: ListModel) -> None:
        """After a run that failed: nothing removed that must stay, nothing extra added."""
        self.tally.checks += 1
        on = self.world.control.list_members(model.list_id)
        members = self.exportable()
        unsub = self.unsubscribed
        if model.mode == "add_update":
            must_on = (model.ours | model.hand) - unsub
        else:
            # A leaver this export may have delivered may be removed, even if added by hand.
            must_on = ((model.ours & members) | (model.hand - (model.maybe - members))) - unsub
        may_on = (must_on | members | model.ours | model.maybe | model.hand) - unsub
        self._compare(model, on, must_on, may_on, "after a failed run")
        if model.mode == "mirror":
            gone = {e for e in model.ours - members if e not in on}
            model.ours -= gone
            model.maybe |= gone  # removed, or lost track of by an interrupted removal
        model.maybe |= members - model.ours

    def _compare(self, model: ListModel, on: set[str], must_on: set[str], may_on: set[str],
                 when: str) -> None:
        resubscribed = on & self.unsubscribed
        lost = must_on - on
        extra = on - may_on - self.unsubscribed
        for kind, emails in (("resubscribed", resubscribed), ("lost", lost), ("extra", extra)):
            if emails:
                self.tally.violations[kind] += len(emails)
        if resubscribed or lost or extra:
            raise Violation("list wrong", f"{model.name} ({model.mode}) {when}: "
                            f"lost {sorted(lost)}, extra {sorted(extra)}, "
                            f"re-subscribed {sorted(resubscribed)}; model: ours "
                            f"{sorted(model.ours)}, maybe {sorted(model.maybe)}, hand "
                            f"{sorted(model.hand)}", lost | extra | resubscribed)

    def _check_counts(self, model: ListModel, run: Run) -> None:
        c = run.counts
        segment = [p for p in self.people if p.in_segment]
        wanted = {"in_segment": len(segment),
                  "no_consent": sum(1 for p in segment if not p.consent),
                  "rejected_locally": sum(1 for p in segment if p.consent and not p.valid)}
        problems = [f"{k} {c.get(k)} != {v}" for k, v in wanted.items() if c.get(k) != v]
        local = c["sent"] + c["unchanged"] + c["rejected_locally"] + c["no_consent"] + c.get(
            "suppressed", 0)
        if c["in_segment"] != local:
            problems.append(f"in_segment {c['in_segment']} != sent + unchanged + rejected + "
                            f"no consent + suppressed {local}")
        # A suppressed person is never sent: every unsubscribe (all made between runs) was
        # read back before the run sent anything, so none reached an import.
        held = len(self.exportable() & self.unsubscribed)
        if c.get("suppressed") != held:
            problems.append(f"suppressed {c.get('suppressed')} != unsubscribed members {held}")
        if c["unsubscribed_not_added"]:
            problems.append(f"{c['unsubscribed_not_added']} unsubscribed contacts were sent")
        remote = c["accepted"] + c["rejected_by_constant_contact"] + c["unsubscribed_not_added"]
        if c["sent"] != remote:
            problems.append(f"sent {c['sent']} != accepted + refused + unsubscribed {remote}")
        if model.mode == "mirror" and c["left_segment"] != c["removed"] + c["already_off_list"]:
            problems.append(f"left {c['left_segment']} != removed {c['removed']} + already off "
                            f"{c['already_off_list']}")
        if run.full_resync and c["unchanged"] != 0:
            problems.append(f"a full resync left {c['unchanged']} unchanged")
        if problems:
            self.tally.violations["counts"] += 1
            raise Violation("counts", f"{model.name} run {run.id}: " + "; ".join(problems))

    def _check_values(self, model: ListModel) -> None:
        """Every exportable member on the list carries the first name its profile has now."""
        every = self.world.control.contacts()
        contacts = {c["email"].lower(): c for c in every}
        on = self.world.control.list_members(model.list_id)
        stale = [p.key for p in self.people if p.exportable and p.key in on
                 and contacts[p.key].get("first_name") != p.first_name]
        twice = [e for e, n in Counter(c["email"].lower() for c in every).items() if n > 1]
        if stale:
            self.tally.violations["stale"] += len(stale)
            raise Violation("stale values", f"{model.name}: first names not updated", stale)
        if twice:
            self.tally.violations["twice"] += len(twice)
            raise Violation("contacts twice", "the account holds these twice", twice)

    # -- helpers -----------------------------------------------------------------------------

    def _load(self) -> None:
        self.world.load_profiles([p.row() for p in self.people])
        with self.world.sessions() as session:
            refresh_segments(session, self.world.store)
            session.commit()

    def _recover_grant(self) -> None:
        with self.world.sessions() as session:
            connection = session.get(Connection, self.world.connection.id)
            assert connection is not None
            needs = connection.status != CONNECTED
        if needs:
            reauthorize(self.world)
            self.tally.actions["re-authorize"] += 1

