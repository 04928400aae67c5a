"""A run keeps glibc mapping its large blocks on their own (members.py ``_large_blocks_mapped``),
so the freed pages of import bodies and member blobs go back to the system."""

from __future__ import annotations

import ctypes
import subprocess
import sys
from pathlib import Path

import pytest

# In a fresh process: malloc's threshold is the process's for good once set.
_PROBE = """
import ctypes, sys
class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info
if sys.argv[1] == "run":
    from segment_export.exports.members import _large_blocks_mapped
    assert _large_blocks_mapped()
big = bytearray(8 << 20)  # freed, it raises glibc's own threshold to 8 MB
del big
before = libc.mallinfo2().hblkhd
block = bytearray(1 << 20)
print(libc.mallinfo2().hblkhd - before)
"""


def _mapped_bytes_of_a_1mb_block(mode: str) -> int:
    src = Path(__file__).resolve().parents[2] / "src"
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True,
                         check=True, env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"})
    return int(out.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux")
                    or not hasattr(ctypes.CDLL(None), "mallinfo2"), reason="glibc only")
def test_a_block_of_a_megabyte_is_mapped_after_a_larger_one_was_freed() -> None:
    # Without the setting glibc serves it from an arena (whose freed pages stay resident).
    assert _mapped_bytes_of_a_1mb_block("plain") == 0
    assert _mapped_bytes_of_a_1mb_block("run") >= 1 << 20
