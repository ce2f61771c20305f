"""Helpers for the service tests: a small catalog, a fake scorer that reads the click
history through features/, and a registry whose models are such fakes."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from recommender.contracts import write_banners
from recommender.domain import Banner
from recommender.store import open_store
from service.config import parse_config
from service.engine import RankingEngine
from training.registry import ModelRegistry, RegistryError

CLIENT_KEY = "client-key-for-tests"
ADMIN_KEY = "admin-key-for-tests"


def catalog() -> list[Banner]:
    return [
        Banner("b-policy", "policy", "정책", priority=5),
        Banner("b-info", "info", "정보", priority=3),
        Banner("b-survey", "survey", "설문", priority=1),
        Banner("b-event", "event", "행사", priority=0),
        Banner("b-pinned", "policy", "공지", pinned=True, priority=9),
        Banner("b-heads", "custom", "교장 대상", target={"role": ("principal",)}),
        Banner("b-old", "info", "지난 배너", start=0.0, end=1.0),
    ]


class FakeScorer:
    """Scores a banner by a fixed table (unknown banners 0), minus 10 when the person
    already clicked it: the history comes through features.history like a real model."""

    def __init__(self, version: str, table: dict[str, float] | None = None, fail: bool = False,
                 attributes: tuple[str, ...] = ()):
        self.version = version
        self.table = table or {"b-survey": 3.0, "b-event": 2.0, "b-info": 1.0, "b-policy": 0.5}
        self.fail = fail
        self.staff_attributes = tuple(attributes)  # the staff attributes a real model's features read
        self.calls = 0

    def score(self, rows, history):
        self.calls += 1
        if self.fail:
            raise RuntimeError("model exploded")
        ids = [b.banner_id for b in rows.banner]
        h = history.query(list(rows.staff_id), ids, [b.category for b in rows.banner], rows.ts)
        return np.array([self.table.get(b, 0.0) for b in ids]) - 10.0 * h["ever_clicked_banner"]


def run_cli(*args: str) -> str:
    """``recommender ARGS`` in a child process from the project's folder; its output (it must succeed)."""
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=Path(__file__).resolve().parent.parent,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def load_model(folder):
    """A model loader for `[service] model_loader = "service_support:load_model"` (the
    integration tests run a real server on fake models); a trained model folder (with
    checksums) goes to the real loader."""
    meta = json.loads((Path(folder) / "metadata.json").read_text())
    if "files" in meta:
        from training.artifact import load_model as load_trained

        return load_trained(folder)
    if meta.get("broken"):
        raise ValueError(meta["broken"])
    return FakeScorer(meta["version"], meta.get("table"), fail=meta.get("fail", False),
                      attributes=meta.get("attributes") or ())


class FakeRegistry(ModelRegistry):
    """A real registry (registry.json, promote, rollback) whose folders hold fake models:
    metadata.json {"table": {...}} or {"broken": "reason"}."""

    def load(self, version):
        folder = self.folder(version)
        if not folder.is_dir():
            raise RegistryError(f"model {version!r} is not in the registry {self.root}")
        meta = json.loads((folder / "metadata.json").read_text())
        if meta.get("broken"):
            raise ValueError(meta["broken"])
        return FakeScorer(version, meta.get("table"), fail=meta.get("fail", False), attributes=meta.get("attributes") or ())


def add_fake_model(models: Path, version: str, table: dict | None = None, broken: str | None = None,
                   fail: bool = False, attributes: tuple[str, ...] = ()) -> None:
    d = models / version
    d.mkdir(parents=True)
    (d / "metadata.json").write_text(json.dumps({"version": version, "table": table, "broken": broken, "fail": fail,
                                                 "attributes": list(attributes)}))


def write_config(tmp: Path, arms: str = "", extra: str = "", db: str = "events.db") -> Path:
    write_banners(tmp / "banners.json", catalog())
    (tmp / "staff.csv").write_text("staff_id,role,school_level,region\ns-1,teacher,elementary,Suwon\n"
                                   "s-p,principal,high,Goyang\n", encoding="utf-8")
    arms = arms or '[arms]\nsalt = "s"\n[arms.A]\nshare = 1.0\nepsilon = 0.0\n'
    text = f"""
[service]
db = "{db}"
models = "models"
banners = "banners.json"
staff = "staff.csv"
seed = 1
log_salt = "test-salt"
sync_interval = 0.05
{extra}
[keys]
client = ["{CLIENT_KEY}"]
admin = ["{ADMIN_KEY}"]
{arms}
"""
    p = tmp / "service.toml"
    p.write_text(text, encoding="utf-8")
    return p


def config_text(service: dict, client_key: str = CLIENT_KEY, admin_key: str = ADMIN_KEY, epsilon: float = 0.1,
                salt: str = "s") -> str:
    """A service config with the ``[service]`` keys given and one arm A serving everyone."""
    lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in service.items())
    return (f"[service]\n{lines}\n[keys]\nclient = [{json.dumps(client_key)}]\nadmin = [{json.dumps(admin_key)}]\n"
            f"[arms]\nsalt = {json.dumps(salt)}\n[arms.A]\nshare = 1.0\nepsilon = {epsilon}\n")


def config_from(path: Path):
    import tomllib

    return parse_config(tomllib.loads(path.read_text()), path.parent, path)


def started_engine(cfg, registry) -> RankingEngine:
    """An engine with its state loaded and no background threads (the tests drive it)."""
    engine = RankingEngine(cfg, open_store(cfg.db), registry=registry)
    engine.start(background=False)
    return engine


def make_client(tmp_path, arms: str = "", extra: str = "", promote: str | None = "m1", **model):
    """A TestClient over an engine with the test config, fake models in a real registry and
    ``promote`` promoted to arm A (None: no model); enter the client to start the engine."""
    from fastapi.testclient import TestClient

    from service.app import create_app

    cfg = config_from(write_config(tmp_path, arms, extra))
    reg = FakeRegistry(cfg.models)
    if promote:
        add_fake_model(cfg.models, promote, **model)
        reg.promote(promote, "A", verify=False)
    engine = RankingEngine(cfg, open_store(cfg.db), registry=reg)
    client = TestClient(create_app(engine=engine))
    return client, engine
