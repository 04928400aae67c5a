"""The REST API (FastAPI) and the app factory that serves it together with the web UI."""

from segment_export.api.app import create_app

__all__ = ["create_app"]
