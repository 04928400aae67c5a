"""`segment-export emulator`."""

from __future__ import annotations

import click


@click.group("emulator")
def emulator_group() -> None:
    """(being built)"""
