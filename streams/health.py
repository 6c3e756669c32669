"""Liveness and readiness of a worker, for an orchestrator's probes (Kubernetes, Compose).

`/health` (liveness) answers 200 while the worker's event loop serves requests: restarting a
worker that answers does not help it, so a lost broker or Redis does not fail it (they have
their own metrics and alerts). `/ready` (readiness) answers 200 once the tables of the
partitions the worker holds are recovered (streams/faststore.py's changelog reads and Faust's
own recovery), and 503 before and while a rebalance recovers them again, with what it waits for.
A worker with no partition (more workers than partitions) is ready: it idles until one frees.
"""

from __future__ import annotations

from typing import Any

from streams import faststore


class Readiness:
    """Reads a Faust app's recovery state and streams.faststore's loads (no side effects)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def check(self) -> tuple[bool, dict[str, Any]]:
        """(ready, why) where why is the JSON body the probe gets."""
        loads = [load.as_json() for load in faststore.LOADS]
        if loads:
            return False, {"status": "recovering", "loading": loads}
        recovery = self.app.tables.recovery
        if not recovery.completed.is_set():
            return False, {"status": "starting"}
        if recovery.in_recovery:
            return False, {"status": "recovering", "loading": []}
        return True, {"status": "ready"}


def install_health(app: Any) -> Readiness:
    """Adds /health and /ready to the app's web server."""
    readiness = Readiness(app)

    async def health_page(web: Any, request: Any) -> Any:
        return web.json({"status": "ok"})

    async def ready_page(web: Any, request: Any) -> Any:
        ready, why = readiness.check()
        return web.json(why, status=200 if ready else 503)

    # Called, not used as decorators: `app` is untyped here, and mypy refuses untyped decorators.
    app.page("/health")(health_page)
    app.page("/ready")(ready_page)
    return readiness
