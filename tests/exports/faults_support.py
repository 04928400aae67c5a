"""What the fault tests share: members, the exact-list and counts-add-up checks, runs with a
client tuned for the fault (short read timeout, quick backoff), and real CLI processes to kill."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from segment_export.db.models import Connection, Export, Run
from segment_export.definitions import connections
from segment_export.exports.delivery import load_members
from segment_export.exports.dependencies import RunDependencies
from segment_export.exports.runs import request_run, run_to_completion
from tests.world import World

ROOT = Path(__file__).resolve().parents[2]


def people(n: int, *, start: int = 1) -> list[dict[str, object]]:
    return [{"customer_id": i, "email": f"person{i}@example.com", "first_name": f"P{i}",
             "last_name": "Doe", "country": "DE", "consent": True}
            for i in range(start, start + n)]


def expected(n: int, *, start: int = 1) -> set[str]:
    return {f"person{i}@example.com" for i in range(start, start + n)}


def prepare(world: World, n: int, *, batch: int = 100, name: str = "faulty") -> Export:
    """``n`` members in one segment and an export of it, sent ``batch`` contacts a request."""
    world.settings = world.settings.model_copy(update={"import_batch_contacts": batch})
    world.load_profiles(people(n))
    return world.export(name, [world.segment(f"{name} members", "country = 'DE'")])


def deps(world: World, *, read_timeout: float | None = None, **extra: Any) -> RunDependencies:
    """``world.deps()``, with the client's read timeout cut to ``read_timeout`` seconds."""
    base = world.deps(**extra)
    options = dict(base.client_options)
    if read_timeout is not None:
        options["timeout"] = httpx.Timeout(read_timeout, connect=5.0)
    return dataclasses.replace(base, client_options=options)


def run(world: World, export: Export, *, using: RunDependencies | None = None,
        **deps_options: Any) -> Run:
    """Request a run of ``export`` and carry it out here (as worker ``using``, if given)."""
    with world.sessions.begin() as session:
        queued = request_run(session, actor=world.admin, export=export)
    return run_to_completion(queued.id, deps=using or deps(world, **deps_options), backoff=0.01)


def imports(world: World) -> list[Any]:
    return [r for r in world.control.requests() if r.path.endswith("contacts_json_import")]


def assert_exact(world: World, list_id: str, members: set[str]) -> None:
    """The list holds exactly ``members``, and the account holds each address once."""
    assert world.control.list_members(list_id) == members
    twice = [e for e, n in Counter(c["email"].lower() for c in world.control.contacts()).items()
             if n > 1]
    assert twice == [], f"contacts created twice: {twice[:5]}"


def assert_accounted(run: Run, n: int) -> None:
    """Every member is in exactly one count, and every contact sent has an outcome."""
    c = run.counts
    assert c["in_segment"] == n
    assert c["in_segment"] == c["sent"] + c["unchanged"] + c["rejected_locally"] + c["no_consent"]
    assert c["sent"] == c["accepted"] + c["rejected_by_constant_contact"] + c[
        "unsubscribed_not_added"]


def delivered(world: World, export: Export) -> set[str]:
    """The emails the export's delivered state says Constant Contact confirmed."""
    members = load_members(world.engine, export.id, emails=True)
    return {str(e) for e in members.emails.to_pylist()} if members.emails is not None else set()


def reauthorize(world: World) -> None:
    """What an admin does on Admin > Connections > Re-authorize, consenting at the emulator."""
    with world.sessions.begin() as session:
        conn = session.get(Connection, world.connection.id)
        assert conn is not None
        url = connections.start_authorization(session, actor=world.admin, connection=conn,
                                              settings=world.settings)
    callback = world.control.approve_url(url)
    with world.sessions() as session:
        conn = session.get(Connection, world.connection.id)
        assert conn is not None
        connections.complete_authorization(session, actor=world.admin, connection=conn,
                                           callback_url=callback, settings=world.settings,
                                           engine=world.engine)
        session.commit()


class Zygote:
    """Drives ``tests.exports.fault_workers``: real CLI processes, forked warm, to kill."""

    def __init__(self, log: Path) -> None:
        self._log = log
        with log.open("w") as stderr:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "tests.exports.fault_workers"], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=stderr, text=True,
                # src first: the children run this checkout's code, not whatever the venv
                # has installed (a worktree's venv installs another checkout's src).
                env={**os.environ,
                     "PYTHONPATH": os.pathsep.join((str(ROOT / "src"), str(ROOT)))})

    def _ask(self, **command: Any) -> Any:
        assert self._proc.stdin is not None
        assert self._proc.stdout is not None
        self._proc.stdin.write(json.dumps(command) + "\n")
        self._proc.stdin.flush()
        line = self._proc.stdout.readline()
        assert line, f"the zygote died: {self._log.read_text()[-2000:]}"
        return json.loads(line)

    def start(self, argv: list[str], env: dict[str, str]) -> int:
        return int(self._ask(op="run", argv=argv, env=env)["pid"])

    def exit_code(self, pid: int) -> int | None:
        """None while the process runs; then its exit code (-9: killed by SIGKILL)."""
        code = self._ask(op="poll", pid=pid)["exit"]
        return None if code is None else int(code)

    def wait(self, pid: int) -> int:
        return int(self._ask(op="wait", pid=pid)["exit"])

    def close(self) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.close()
        self._proc.wait(10)
        assert self._proc.stdout is not None
        self._proc.stdout.close()


def cli_env(world: World, *, batch: int) -> dict[str, str]:
    """What a `segment-export` process forked by the zygote needs to act on ``world``."""
    settings = world.settings
    return {
        "SEGMENT_EXPORT_DATA_DIR": str(settings.data_dir),
        "SEGMENT_EXPORT_SECRET_KEY": ",".join(k.decode() for k in settings.encryption_keys),
        "SEGMENT_EXPORT_CC_API_URL": settings.cc_api_url,
        "SEGMENT_EXPORT_CC_AUTH_URL": settings.cc_auth_url,
        "SEGMENT_EXPORT_CC_REQUESTS_PER_SECOND": "40",
        "SEGMENT_EXPORT_IMPORT_BATCH_CONTACTS": str(batch),
        "SEGMENT_EXPORT_LOG_LEVEL": "WARNING",
    }
