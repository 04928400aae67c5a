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
    DependentExport,
    Preview,
    SegmentChanges,
    SegmentSpec,
    create_segment,
    delete_segment,
    dependent_exports,
    get_segment,
    list_segments,
    preview_segment,
    require_may_change,
    size_history,
    update_segment,
)

__all__ = [
    "AllGroup",
    "AnyGroup",
    "Condition",
    "DependentExport",
    "Preview",
    "RefreshResult",
    "Rule",
    "SegmentChanges",
    "SegmentSpec",
    "compile_expression",
    "compile_rule",
    "compile_segment",
    "create_segment",
    "delete_segment",
    "dependent_exports",
    "get_segment",
    "list_segments",
    "parse_rule",
    "preview_segment",
    "refresh_segment",
    "refresh_segments",
    "require_may_change",
    "segment_condition",
    "size_history",
    "to_sql",
    "update_segment",
]
