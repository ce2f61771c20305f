"""The model registry: trained model folders under one directory, and which version each
arm serves.

Layout: ``<models>/<version>/`` (written by ``recommender train``: model.joblib +
metadata.json with checksums) and ``<models>/registry.json``:
``{"arms": {"A": "v..."}, "history": [{"arm", "version", "previous", "at"}],
"shares": {"A": 0.9, "B": 0.1}, "ramp": {...}}``: the version each arm serves, the arms'
traffic shares when they are changed live (else the service config's), and a new arm's
ramp (its share stepping up on a schedule; see service/arms.py). Every change is a
read-modify-write under a lock on ``registry.lock`` and rewrites registry.json atomically
(write, fsync, rename); the service picks the change up on ``POST /v1/admin/reload``, and
every worker notices the file changing within its sync interval. Only folders directly
under the registry are ever loaded: a joblib file runs code when loaded.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from .artifact import load_model
from .artifact import verify as verify_artifact

REGISTRY_FILE = "registry.json"
LOCK_FILE = "registry.lock"
T = TypeVar("T")
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class RegistryError(RuntimeError):
    """A version that is not in the registry, or a registry file that cannot be read."""


@dataclass
class ModelInfo:
    version: str
    created: str
    metrics: dict
    arms: list[str]
    error: str | None = None
    data_from: str = ""
    data_to: str = ""
    offline_ab: dict | None = None  # the retrain gate's A/B against the model it would replace


class ModelRegistry:
    """``loader`` loads a verified model folder (default: training.artifact.load_model,
    which checks the checksums first); another loader (tests, benchmarks) is trusted to
    check what it loads."""

    def __init__(self, root: str | Path, loader: Callable[[Path], object] | None = None):
        self.root = Path(root)
        self.loader = loader

    @property
    def state_path(self) -> Path:
        return self.root / REGISTRY_FILE

    def folder(self, version: str) -> Path:
        if not _VERSION.match(version or ""):
            raise RegistryError(f"invalid model version {version!r}")
        return self.root / version

    def state(self) -> dict:
        try:
            raw = self.state_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {"arms": {}, "history": []}
        try:
            state = json.loads(raw)
        except json.JSONDecodeError as e:
            raise RegistryError(f"{self.state_path}: not valid JSON ({e})") from None
        if not isinstance(state, dict) or not isinstance(state.get("arms", {}), dict):
            raise RegistryError(f"{self.state_path}: expected {{'arms': {{...}}, 'history': [...]}}")
        state.setdefault("arms", {})
        state.setdefault("history", [])
        return state

    def state_stamp(self) -> tuple[int, int] | None:
        """Changes whenever registry.json is rewritten (mtime, inode)."""
        try:
            st = self.state_path.stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_ino)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Holds ``registry.lock``: two processes changing the registry (a promotion and a
        ramp step, say) must not both write what they read before the other's change."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / LOCK_FILE, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def update(self, change: Callable[[dict], T]) -> T:
        """Apply ``change`` to the state and write it, under the lock; returns what
        ``change`` returns (it may raise RegistryError, and then nothing is written)."""
        with self._locked():
            state = self.state()
            out = change(state)
            self._write_state(state)
            return out

    def _write_state(self, state: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(f".tmp{os.getpid()}")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(state, f, ensure_ascii=False, indent=1)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.state_path)

    def versions(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and (p / "metadata.json").is_file()
                      and _VERSION.match(p.name))

    def resolve(self, arm: str) -> str | None:
        return self.state()["arms"].get(arm)

    def list(self) -> list[ModelInfo]:
        arms_of: dict[str, list[str]] = {}
        for arm, v in self.state()["arms"].items():
            arms_of.setdefault(v, []).append(arm)
        out = []
        for v in self.versions():
            try:
                meta = self.metadata(v)
            except RegistryError as e:
                out.append(ModelInfo(v, "", {}, arms_of.get(v, []), str(e)))
                continue
            validation = meta.get("validation") or {}
            # the chosen kind's validation metrics when the trainer compared several
            metrics = validation.get(meta.get("kind"), validation) if isinstance(validation, dict) else {}
            metrics = {k: x for k, x in metrics.items() if not isinstance(x, dict)}
            data = meta.get("training_data") or {}
            out.append(ModelInfo(v, str(meta.get("created", "")), metrics, arms_of.get(v, []), None,
                                 str(data.get("from", "")), str(data.get("to", "")), meta.get("offline_ab")))
        return out

    def promote(self, version: str, arm: str = "A", verify: bool = True) -> str | None:
        """Make ``version`` the model of ``arm``; returns the version it replaces."""
        if version == "latest":
            versions = self.versions()
            if not versions:
                raise RegistryError(f"no model folders in {self.root}")
            version = max(versions, key=lambda v: (self.root / v / "metadata.json").stat().st_mtime_ns)
        folder = self.folder(version)
        if not folder.is_dir():
            raise RegistryError(f"no model {version!r} in {self.root} (see `recommender models list`)")
        if verify:
            try:
                self.verify(folder)
            except Exception as e:
                raise RegistryError(f"model {version!r} fails its checks: {e}") from None

        def change(state: dict) -> str | None:
            previous = state["arms"].get(arm)
            state["arms"][arm] = version
            state["history"].append({"arm": arm, "version": version, "previous": previous, "at": _now()})
            return previous

        return self.update(change)

    def rollback(self, arm: str = "A", to_fallback: bool = False) -> tuple[str | None, str | None]:
        """Undo the last promotion of ``arm``; returns (from, to). An arm whose last
        promotion had no predecessor is left without a model (the operators' order) only
        with ``to_fallback``."""

        def change(state: dict) -> tuple[str | None, str | None]:
            for h in reversed(state["history"]):
                if h.get("arm") == arm and not h.get("rolled_back"):
                    current, previous = state["arms"].get(arm), h.get("previous")
                    if previous is None and not to_fallback:
                        raise RegistryError(f"arm {arm!r} has no earlier version to roll back to (it would serve "
                                            "the operators' order: ask for that with --to-fallback)")
                    if previous is None:
                        state["arms"].pop(arm, None)
                    else:
                        state["arms"][arm] = previous
                    h["rolled_back"] = True
                    state["history"].append({"arm": arm, "version": previous, "previous": current, "rollback": True,
                                             "rolled_back": True, "at": _now()})
                    return current, previous
            raise RegistryError(f"nothing to roll back for arm {arm!r}")

        return self.update(change)

    def set_shares(self, shares: dict[str, float]) -> None:
        """The arms' traffic shares from now on (they must add up to 1); an unfinished
        ramp ends, since it would set them again."""
        if any(not isinstance(v, (int, float)) or v < 0 for v in shares.values()) or \
                abs(sum(shares.values()) - 1.0) > 1e-6:
            raise RegistryError(f"arm shares must be >= 0 and add up to 1, got {shares}")

        def change(state: dict) -> None:
            state["shares"] = {k: float(v) for k, v in shares.items()}
            ramp = state.get("ramp")
            if ramp and ramp.get("status") == "ramping":
                ramp.update(status="ended", reason="the shares were set by hand", ended=_now())
            state["history"].append({"shares": state["shares"], "at": _now()})

        self.update(change)

    def start_ramp(self, arm: str, control: str, steps: list[float], every_s: float, now: float) -> None:
        """Step ``arm``'s share of the traffic through ``steps`` (fractions of everyone),
        one step every ``every_s`` seconds, taking it from ``control``; see service/arms.py."""
        if arm == control or not steps or any(not 0 < x <= 1 for x in steps) or every_s <= 0:
            raise RegistryError("a ramp needs two different arms, steps in (0, 1] and a positive step time")

        def change(state: dict) -> None:
            state["ramp"] = {"arm": arm, "control": control, "steps": [float(x) for x in steps],
                             "every_s": float(every_s), "started": float(now), "status": "ramping", "reason": ""}
            state["history"].append({"ramp": arm, "control": control, "steps": steps, "at": _now()})

        self.update(change)

    def end_ramp(self, status: str, reason: str, shares: dict[str, float] | None = None,
                 promote: tuple[str, str] | None = None) -> None:
        """Close the running ramp as ``status`` ("stopped": the new arm lost; "done": it
        reached its last step), optionally setting the shares and promoting (version, arm)
        in the same write."""

        def change(state: dict) -> None:
            ramp = state.get("ramp")
            if not ramp or ramp.get("status") != "ramping":
                return
            ramp.update(status=status, reason=reason, ended=_now())
            if shares is not None:
                state["shares"] = {k: float(v) for k, v in shares.items()}
            if promote is not None:
                version, arm = promote
                previous = state["arms"].get(arm)
                state["arms"][arm] = version
                state["history"].append({"arm": arm, "version": version, "previous": previous, "at": _now(),
                                         "after_ramp": ramp["arm"]})
            state["history"].append({"ramp": ramp["arm"], "status": status, "reason": reason, "at": _now()})

        self.update(change)

    def metadata(self, version: str) -> dict:
        """A model folder's metadata.json."""
        path = self.folder(version) / "metadata.json"
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RegistryError(f"no model {version!r} in {self.root} (see `recommender models list`)") from None
        except (OSError, json.JSONDecodeError) as e:
            raise RegistryError(f"{path}: unreadable metadata ({e})") from None

    def verify(self, folder: Path) -> None:
        """The checksums of a trained model folder (training.artifact.verify); with another
        loader, a load."""
        if self.loader is None:
            verify_artifact(folder)
        else:
            self.loader(folder)

    def load(self, version: str):
        """Load a model folder of this registry (checksums verified by the loader)."""
        folder = self.folder(version)
        if not folder.is_dir():
            raise RegistryError(f"model {version!r} is not in the registry {self.root}")
        return (self.loader or load_model)(folder)
