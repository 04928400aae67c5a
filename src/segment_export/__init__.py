"""segment-export: keep customer segments flowing into Constant Contact contact lists."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("segment-export")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
