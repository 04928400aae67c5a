"""`segment-export profiles`."""

from __future__ import annotations

import click


@click.group("profiles")
def profiles_group() -> None:
    """(being built)"""
