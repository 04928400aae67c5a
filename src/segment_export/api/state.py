"""What one app instance holds: settings, the runtime (state and profile stores, metrics) and
the queue."""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.requests import Request

from segment_export.api.throttle import SignInThrottle
from segment_export.config import Settings
from segment_export.metrics import Metrics
from segment_export.scheduling.queue import TaskQueue
from segment_export.scheduling.runtime import Runtime


@dataclass(slots=True)
class AppServices:
    """Shared by every request of one app; the runtime owns the process's one profile store."""

    settings: Settings
    runtime: Runtime
    queue: TaskQueue
    sign_ins: SignInThrottle = field(default_factory=SignInThrottle)

    @property
    def metrics(self) -> Metrics:
        """This app's metrics (its runtime's): what its routes record and ``/metrics`` shows."""
        return self.runtime.metrics

    def public_base(self, request: Request) -> str:
        """The app's base URL as the outside world reaches it (no trailing slash)."""
        if self.settings.public_url:
            return self.settings.public_url.rstrip("/")
        return str(request.base_url).rstrip("/")


def services_of(request: Request) -> AppServices:
    """The services of the app serving ``request``."""
    services: AppServices = request.app.state.services
    return services
