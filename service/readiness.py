"""What ``/readyz`` reports: whether the event store takes writes (the one thing without
which the service must not take traffic), and why the service is degraded if it is (an
arm without its model, a failing ranking log)."""
from __future__ import annotations

import os
from dataclasses import dataclass

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

    def report(self) -> dict:
        problems = []
        try:
            self.store.check_writable()
            store_ok = True
        except Exception as e:
            store_ok = False
            problems.append(f"store not writable: {e}")
        if self.ranking_log.error:
            problems.append(self.ranking_log.error)
        arms = {}
        for name, st in self.models.arms.items():
            arms[name] = {"model_version": st.version, "epsilon": st.arm.epsilon, "share": st.arm.share,
                          "error": st.error}
            if st.scorer is None:
                problems.append(f"arm {name}: no model ({st.error}); answering with the operators' order")
            elif st.error:
                problems.append(f"arm {name}: {st.error}")
        return {"ready": store_ok, "status": "degraded" if problems else "ok", "problems": problems, "arms": arms,
                "catalog_banners": len(self.directory.catalog), "staff": len(self.directory.staff),
                "history": self.online.counts(), "worker": os.getpid()}
