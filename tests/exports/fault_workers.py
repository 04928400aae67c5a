"""A zygote for fault tests: a process that imports the CLI once, then forks one real
`segment-export` process per command, for a test to kill with SIGKILL and then resume.

Importing the CLI takes seconds on a loaded 2-core machine, which twenty kills and resumes
cannot afford. Each forked child is still its own process running the real command, with its
own state-store connections and profile-store handle, so SIGKILL hits it as it would a worker.
The zygote imports nothing of the test (it is started with ``python -m``) and runs no thread,
so forking it is safe.

Protocol, one JSON object a line: ``{"op": "run", "argv": [...], "env": {...}}`` answers
``{"pid": N}``; ``{"op": "poll", "pid": N}`` answers ``{"exit": None}`` while it runs, else its
exit code (negative: killed by that signal); ``{"op": "wait", "pid": N}`` waits for the exit.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from typing import Any

# What a run imports on first use, imported once here so that each child starts warm.
import h11  # noqa: F401
import httpcore  # noqa: F401
import numpy.random  # noqa: F401
import pyarrow as pa
import sqlalchemy.dialects.sqlite  # noqa: F401
import sqlglot.dialects.duckdb  # noqa: F401

import segment_export.exports.runs  # noqa: F401
from segment_export.cli import main

pa.array(["warm"])  # pyarrow's first conversion looks for pandas, importing it if installed


def _child(argv: list[str], env: dict[str, str]) -> None:
    """Become ``segment-export *argv``; never returns."""
    code = 1
    try:
        # The zygote's stdin and stdout carry its protocol; the command must not touch them.
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.dup2(2, 1)
        os.environ.update(env)
        sys.argv = ["segment-export", *argv]
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _answer(command: dict[str, Any]) -> dict[str, Any]:
    if command["op"] == "run":
        pid = os.fork()
        if pid == 0:
            _child(command["argv"], command["env"])
        return {"pid": pid}
    flags = os.WNOHANG if command["op"] == "poll" else 0
    pid, status = os.waitpid(command["pid"], flags)
    return {"exit": None if pid == 0 else os.waitstatus_to_exitcode(status)}


def serve() -> None:
    """Answer commands from stdin until it closes."""
    for line in sys.stdin:
        print(json.dumps(_answer(json.loads(line))), flush=True)


if __name__ == "__main__":
    serve()
