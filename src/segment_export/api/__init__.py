"""The REST API (FastAPI routers under /api); ``segment_export.app`` serves it with the web UI."""
