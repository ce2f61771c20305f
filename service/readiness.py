"""What ``/readyz`` reports: whether the event store takes writes (the one thing without
which the service must not take traffic), and why the service is degraded if it is (an
arm without its model, a failing ranking log)."""
from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass, field

from recommender.store import EventStore

from .directory import Directory
from .models import ArmModels
from .online import OnlineHistory
from .ranking_log import RankingLog


@dataclass
class Readiness:
    store: EventStore
    ranking_log: RankingLog
    models: ArmModels
    directory: Directory
    online: OnlineHistory
    check_every: float = 1.0  # seconds: /readyz is unauthenticated, and the check writes
    _checked: tuple[float, str | None] = field(default=(-math.inf, None), init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def store_problem(self) -> str | None:
        """Why the store cannot take a write, or None; checked at most once per
        ``check_every`` seconds, however often /readyz is called."""
        with self._lock:
            at, problem = self._checked
            if time.monotonic() - at >= self.check_every:
                try:
                    self.store.check_writable()
                    problem = None
                except Exception as e:
                    problem = f"store not writable: {e}"
                self._checked = (time.monotonic(), problem)
            return problem

    def report(self) -> dict:
        problems = []
        store_problem = self.store_problem()
        store_ok = store_problem is None
        if store_problem:
            problems.append(store_problem)
        if self.ranking_log.error:
            problems.append(self.ranking_log.error)
        arms = {}
        for name, st in self.models.arms.items():
            arms[name] = {"model_version": st.version, **st.arm.explorer.describe(),
                          "share": self.models.shares.get(name, st.arm.share), "error": st.error}
            if st.scorer is None:
                problems.append(f"arm {name}: no model ({st.error}); answering with the operators' order")
            elif st.error:
                problems.append(f"arm {name}: {st.error}")
        return {"ready": store_ok, "status": "degraded" if problems else "ok", "problems": problems, "arms": arms,
                "catalog_banners": len(self.directory.catalog), "staff": len(self.directory.staff),
                "history": self.online.counts(), "worker": os.getpid()}
