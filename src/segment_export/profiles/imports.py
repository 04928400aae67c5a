"""How profiles are imported: `ProfileImport`, the one input of every store's import."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, field_validator

from segment_export.errors import DataError
from segment_export.languages import N_

ImportMode = Literal["replace", "upsert"]


class ProfileImport(BaseModel):
    """The options of ``ProfileStore.import_file`` and ``import_table``, the same for the
    DuckDB, PostgreSQL and Spark stores and from the CLI, the demo and the benchmarks.

    ``mode``: replace (the file becomes the profiles; repeated ids are refused) or upsert (add
    or replace by id; the last row of a repeated id wins). ``format``: csv, parquet or jsonl
    (aliases such as ``json`` and ``pq`` too), files only; None reads it from the extension.
    ``email_column``: the column that must hold email addresses; None imports without one.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id_column: str = "customer_id"
    mode: ImportMode = "replace"
    format: str | None = None
    email_column: str | None = None

    @field_validator("mode", mode="before")
    @classmethod
    def _known_mode(cls, value: object) -> object:
        # The stores' own message, naming the field (pydantic lets a DataError through as it
        # is): the CLI and the stores have always refused an unknown mode with it.
        if value not in get_args(ImportMode):
            raise DataError(N_("Unknown import mode %(mode)s; use replace or upsert"),
                            values={"mode": repr(value)}, field="mode")
        return value
