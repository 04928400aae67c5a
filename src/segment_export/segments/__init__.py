"""Segments: rules compiled to SQL through a parser, refresh with size history, services."""

from segment_export.segments.compiler import (
    compile_expression,
    compile_rule,
    compile_segment,
    to_sql,
)
from segment_export.segments.refresh import (
    RefreshResult,
    refresh_segment,
    refresh_segments,
    segment_condition,
)
from segment_export.segments.rules import AllGroup, AnyGroup, Condition, Rule, parse_rule
from segment_export.segments.service import (
    Preview,
    create_segment,
    delete_segment,
    get_segment,
    list_segments,
    preview_segment,
    size_history,
    update_segment,
)

__all__ = [
    "AllGroup",
    "AnyGroup",
    "Condition",
    "Preview",
    "RefreshResult",
    "Rule",
    "compile_expression",
    "compile_rule",
    "compile_segment",
    "create_segment",
    "delete_segment",
    "get_segment",
    "list_segments",
    "parse_rule",
    "preview_segment",
    "refresh_segment",
    "refresh_segments",
    "segment_condition",
    "size_history",
    "to_sql",
    "update_segment",
]
