"""`segment-export segments`."""

from __future__ import annotations

import click


@click.group("segments")
def segments_group() -> None:
    """(being built)"""
