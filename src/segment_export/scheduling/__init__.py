"""Schedules and the task queue: what runs when, and which worker runs it."""

from segment_export.scheduling.queue import TaskQueue
from segment_export.scheduling.schedules import RefreshSchedule, get_refresh_schedule, tick

__all__ = ["RefreshSchedule", "TaskQueue", "get_refresh_schedule", "tick"]
