"""Which model each A/B arm serves: loaded from the model registry, swapped as a whole.

An arm whose new model fails to load keeps the model it was running and says why; an arm
with no model ranks by the operators' order. Every arm has its own random source (for
exploration) and its lock, so that exploration stays reproducible under a seed.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from recommender.ranker import FALLBACK_VERSION, Ranker
from training.registry import ModelRegistry, RegistryError

from .arms import Arm, ArmAssigner, effective_shares

log = logging.getLogger("service.models")


@dataclass
class ArmState:
    arm: Arm
    ranker: Ranker
    version: str  # the loaded model version, or "fallback"
    scorer: object | None = None
    error: str | None = None  # why the arm runs without the model it should have
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class ReloadReport:
    arms: dict[str, dict]
    ok: bool


class ArmModels:
    """``probe(scorer)`` says why a model that loaded still cannot serve (None: it can);
    such a model is refused like one that fails to load."""

    def __init__(self, arms: list[Arm], registry: ModelRegistry, seed: int | None = None,
                 probe: Callable[[object], str | None] | None = None, salt: str = "arms"):
        self.config_arms = list(arms)
        self.registry = registry
        self.probe = probe
        self.salt = salt
        self.shares = {a.name: a.share for a in arms}
        self.assigner = ArmAssigner(self.config_arms, salt)
        self.arms: dict[str, ArmState] = {}
        self.last_reload: ReloadReport | None = None
        self._seed_seq = np.random.SeedSequence(seed) if seed is not None else np.random.SeedSequence()
        self._lock = threading.Lock()
        self._registry_stamp = None

    def __getitem__(self, name: str) -> ArmState:
        return self.arms[name]

    def assign(self, staff_id: str) -> str:
        return self.assigner.assign(staff_id)

    def refresh_shares(self, now: float, state: dict | None = None) -> bool:
        """Take the shares the registry and a running ramp give now; True when they changed."""
        try:
            state = self.registry.state() if state is None else state
        except Exception as e:  # an unreadable registry: keep the shares in force
            log.error("arm shares not refreshed: %s", e)
            return False
        shares = effective_shares(self.config_arms, state, now)
        if shares == self.shares:
            return False
        self.assigner = ArmAssigner([replace(a, share=shares[a.name]) for a in self.config_arms], self.salt)
        self.shares = shares
        log.info("arm shares now %s", ", ".join(f"{k} {v:.0%}" for k, v in shares.items()))
        return True

    def registry_changed(self) -> bool:
        return self.registry.state_stamp() != self._registry_stamp

    def half_lives(self) -> set[float]:
        """The click-history half-lives of the models the arms would serve now (their
        metadata's feature definition), so that the service keeps those counters."""
        try:
            promoted = self.registry.state()["arms"]
        except Exception:  # an unreadable registry: reload() reports it
            promoted = {}
        out = set()
        for arm in self.config_arms:
            version = arm.model or promoted.get(arm.name)
            try:
                meta = self.registry.metadata(version) if version else {}
                out.add(float(meta["feature_definition"]["config"]["half_life_days"]))
            except (RegistryError, KeyError, TypeError, ValueError):
                continue  # no model, or one without the field: the default applies
        return out

    def reload(self) -> ReloadReport:
        """Load what the registry (or the config) says each arm serves; the arms are
        swapped in one assignment."""
        with self._lock:
            self._registry_stamp = self.registry.state_stamp()
            try:
                state = self.registry.state()
                promoted, registry_error = state["arms"], None
                self.refresh_shares(time.time(), state)
            except Exception as e:
                promoted, registry_error = {}, str(e)
            report: dict[str, dict] = {}
            new_arms: dict[str, ArmState] = {}
            for arm in self.config_arms:
                new_arms[arm.name], report[arm.name] = self._load_arm(arm, arm.model or promoted.get(arm.name),
                                                                      registry_error)
            self.arms = new_arms
            self.last_reload = ReloadReport(report, all(r["error"] is None for r in report.values()))
            return self.last_reload

    def _load_arm(self, arm: Arm, want: str | None, registry_error: str | None) -> tuple[ArmState, dict]:
        old = self.arms.get(arm.name)
        rng = np.random.default_rng(self._seed_seq.spawn(1)[0]) if old is None else old.ranker.rng
        if registry_error and old is not None:
            return old, {"version": old.version, "status": "kept", "error": registry_error}
        if want is None:
            err = registry_error or "no model promoted for this arm"
            return self._fallback(arm, rng, err)
        if old is not None and old.version == want and old.scorer is not None:
            return old, {"version": want, "status": "unchanged", "error": None}
        try:
            scorer = self.registry.load(want)
            problem = self.probe(scorer) if self.probe is not None else None
        except Exception as e:  # checksum, format, or anything the loader raises
            problem = f"failed to load: {e}"
        if problem is not None:
            err = f"model {want!r} {problem}"
            log.error("arm %s: %s", arm.name, err)
            if old is not None and old.scorer is not None:
                return (ArmState(arm, old.ranker, old.version, old.scorer, err, old.lock),
                        {"version": old.version, "status": "kept", "error": err})
            return self._fallback(arm, rng, err)
        log.info("arm %s: serving model %s", arm.name, want)
        return (ArmState(arm, Ranker(scorer, rng=rng, exploration=arm.explorer), want, scorer, None),
                {"version": want, "status": "loaded", "error": None})

    @staticmethod
    def _fallback(arm: Arm, rng: np.random.Generator, err: str) -> tuple[ArmState, dict]:
        return (ArmState(arm, Ranker(None, rng=rng, exploration=arm.explorer), FALLBACK_VERSION, None, err),
                {"version": FALLBACK_VERSION, "status": "fallback", "error": err})
