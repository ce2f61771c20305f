"""The service config (TOML, read with tomllib) and the API keys.

Every key is shown, with its meaning, in service.example.toml and docs/operations.md.
Relative paths are relative to the config file's folder.
"""
from __future__ import annotations

import math
import os
import secrets
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from recommender.contracts.banners import cap_from_dict
from recommender.domain import FrequencyCap
from recommender.errors import ConfigError, FieldError
from recommender.exploration import BOLTZMANN, EPSILON_GREEDY, POLICIES, Exploration

from .arms import Arm
from .online import CLICK_WINDOW_DAYS

LOG_SALT_ENV = "RECOMMENDER_LOG_SALT"  # `recommender serve` sets one for all its workers when the config has none
CLIENT_KEYS_ENV = "RECOMMENDER_CLIENT_KEYS"
ADMIN_KEYS_ENV = "RECOMMENDER_ADMIN_KEYS"
# retention keeps at least the click window and a day: a ranking still open to clicks is never pruned
MIN_RETENTION_DAYS = CLICK_WINDOW_DAYS + 1.0
EXPLORATION_KEYS = ("epsilon", "exploration", "temperature", "depth")  # of [arms] (the default) and [arms.NAME]


@dataclass
class ServiceConfig:
    db: str = "sqlite:///events.db"
    models: Path = Path("models")
    banners: Path | None = None
    staff: Path | None = None
    history: Path | None = None
    history_days: float = 28.0
    history_cache: Path | None = None  # where the history file's counters are kept (default: beside models)
    retention_days: float | None = None  # rankings and clicks older than this are deleted (None: kept)
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    slots: int = 3
    seed: int | None = None
    log_salt: str = field(default_factory=lambda: os.environ.get(LOG_SALT_ENV) or secrets.token_hex(8))
    sync_interval: float = 0.5
    max_body_bytes: int = 256 * 1024
    max_in_flight: int = 32  # requests one worker holds at once before it answers 503 (load shedding)
    max_queue_ms: float = 10.0  # a request that waited longer for its worker is answered 503
    # rankings one worker keeps open to clicks: about 56 bytes each with three banners shown,
    # all taken at start (service.open_rankings): 28 MB per worker at 500,000
    max_open_rankings: int = 500_000
    # person x banner entries of click counters one worker reserves at start for the traffic
    # since (36 bytes each, plus a quarter as many person x category entries: ~45 MB per
    # worker at 1,000,000); its memory is flat until the traffic's pairs outgrow it, then
    # the counters' arrays grow (features.counters)
    online_history_pairs: int = 1_000_000
    default_cap: FrequencyCap | None = None  # the frequency cap of banners without their own
    ramp_check_interval: float = 60.0  # seconds between two looks at a running ramp's clicks
    ramp_alpha: float = 0.05  # a ramp stops when its always-valid 1 - alpha interval is below zero
    ramp_min_requests: int = 500  # per arm, before a ramp may stop
    client_keys: frozenset[str] = frozenset()
    admin_keys: frozenset[str] = frozenset()
    arms: list[Arm] = field(default_factory=lambda: [Arm("A", 1.0)])
    arm_salt: str = "arms"
    model_loader: str | None = None  # "module:function"; None = training.artifact.load_model
    source: Path | None = None

    @property
    def history_cache_dir(self) -> Path:
        """Where the counters built from the history file are saved, so that every worker
        maps one copy and a restart does not read the file again."""
        return self.history_cache or self.models.parent / "history-cache"

    def with_env_keys(self, environ=os.environ) -> "ServiceConfig":
        """Add the keys given through the environment to the config's own."""
        def split(v: str | None) -> frozenset[str]:
            return frozenset(k.strip() for k in (v or "").split(",") if k.strip())

        self.client_keys = self.client_keys | split(environ.get(CLIENT_KEYS_ENV))
        self.admin_keys = self.admin_keys | split(environ.get(ADMIN_KEYS_ENV))
        return self

    def check_keys(self) -> None:
        if not self.admin_keys:
            raise ConfigError(f"no admin API key: set [keys] admin in the config or {ADMIN_KEYS_ENV}")
        if not (self.client_keys or self.admin_keys):
            raise ConfigError(f"no API keys: set [keys] in the config or {CLIENT_KEYS_ENV}/{ADMIN_KEYS_ENV}")
        both = self.client_keys & self.admin_keys
        if both:
            raise ConfigError("a key is listed both as a client key and as an admin key")


def _path(base: Path, value) -> Path | None:
    if value in (None, ""):
        return None
    p = Path(str(value)).expanduser()
    return p if p.is_absolute() else base / p


def _db(base: Path, value: str) -> str:
    if value.startswith(("postgresql://", "postgres://")):
        return value
    path = value[len("sqlite:///"):] if value.startswith("sqlite:///") else value
    return f"sqlite:///{_path(base, path)}"


def parse_config(data: dict, base: Path = Path("."), source: Path | None = None) -> ServiceConfig:
    known = {"service", "keys", "arms"}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"unknown config section(s): {', '.join(sorted(unknown))}")
    s = dict(data.get("service", {}))
    cfg = ServiceConfig(source=source)
    kinds = {**{n: str for n in ("host", "log_salt", "model_loader")},
             **{n: int for n in ("port", "workers", "slots", "max_body_bytes", "max_in_flight", "max_open_rankings",
                                 "online_history_pairs", "ramp_min_requests", "seed")},
             **{n: float for n in ("history_days", "retention_days", "sync_interval", "max_queue_ms",
                                   "ramp_check_interval", "ramp_alpha")}}
    for name, kind in kinds.items():
        if name in s:
            value = s.pop(name)
            try:
                if kind is not str and (isinstance(value, bool) or not isinstance(value, (int, float, str))):
                    raise ValueError
                setattr(cfg, name, kind(value))
            except (TypeError, ValueError):
                what = {str: "a string", int: "a whole number", float: "a number"}[kind]
                raise ConfigError(f"[service] {name}: must be {what}, got {value!r}") from None
    try:
        if "default_cap" in s:
            cfg.default_cap = cap_from_dict(s.pop("default_cap"), "default_cap")
        if "db" in s:
            cfg.db = _db(base, str(s.pop("db")))
        else:
            cfg.db = _db(base, "events.db")
        cfg.models = _path(base, s.pop("models", "models"))
        for name in ("banners", "staff", "history", "history_cache"):
            setattr(cfg, name, _path(base, s.pop(name, None)))
    except FieldError as e:
        raise ConfigError(f"[service] {e.field}: {e.message}") from None
    except (TypeError, ValueError) as e:
        raise ConfigError(f"[service]: {e}") from None
    if s:
        raise ConfigError(f"[service]: unknown key(s) {', '.join(sorted(s))}")
    if min(cfg.workers, cfg.slots, cfg.max_in_flight, cfg.max_open_rankings) < 1 or cfg.max_queue_ms <= 0:
        raise ConfigError("[service]: workers, slots, max_in_flight and max_open_rankings must be at least 1, "
                          "max_queue_ms above 0")
    if cfg.retention_days is not None and not cfg.retention_days >= MIN_RETENTION_DAYS:
        raise ConfigError(f"[service]: retention_days must be at least {MIN_RETENTION_DAYS:g} (the click window "
                          f"of {CLICK_WINDOW_DAYS:g} days and one more), got {cfg.retention_days:g}")
    keys = data.get("keys", {})
    for kind in ("client", "admin"):
        v = keys.get(kind, [])
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, list) or not all(isinstance(k, str) and k for k in v):
            raise ConfigError(f"[keys] {kind} must be a list of non-empty strings")
        setattr(cfg, f"{kind}_keys", frozenset(v))
    arms_sec = dict(data.get("arms", {}))
    cfg.arm_salt = str(arms_sec.pop("salt", "arms"))
    default = _exploration({k: arms_sec.pop(k) for k in EXPLORATION_KEYS if k in arms_sec}, "[arms]",
                           Exploration(EPSILON_GREEDY, 0.1))
    arms = []
    for name, a in arms_sec.items():
        if not isinstance(a, dict):
            raise ConfigError(f"[arms.{name}] must be a table with share (and optionally {', '.join(EXPLORATION_KEYS)}, "
                              "model)")
        extra = set(a) - {"share", "model", *EXPLORATION_KEYS}
        if extra:
            raise ConfigError(f"[arms.{name}]: unknown key(s) {', '.join(sorted(extra))}")
        x = _exploration(a, f"[arms.{name}]", default)
        for key in ("temperature", "depth"):
            if key in a and x.policy != BOLTZMANN:
                raise ConfigError(f"[arms.{name}] {key}: only Boltzmann exploration has one; set exploration = "
                                  f'"{BOLTZMANN}" or remove it')
        if x.policy != BOLTZMANN:  # the [arms] temperature and depth are for the arms that use Boltzmann
            x = Exploration(x.policy, x.epsilon)
        arms.append(Arm(name, float(a.get("share", 0.0)), x.epsilon, a.get("model"), x.policy, x.temperature, x.depth))
    if arms:
        total = sum(a.share for a in arms)
        if abs(total - 1.0) > 1e-6:
            raise ConfigError(f"[arms]: shares add up to {total:g}, they must add up to 1")
        cfg.arms = arms
    else:
        x = default if default.policy == BOLTZMANN else Exploration(default.policy, default.epsilon)
        cfg.arms = [Arm("A", 1.0, x.epsilon, None, x.policy, x.temperature, x.depth)]
    return cfg


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _exploration(section: dict, where: str, default: Exploration) -> Exploration:
    """The exploration keys of an ``[arms]`` or ``[arms.NAME]`` table over ``default``,
    each checked with an error that names it."""
    policy = section.get("exploration", default.policy)
    if policy not in POLICIES:
        raise ConfigError(f"{where} exploration: must be " + " or ".join(f'"{p}"' for p in POLICIES) + f", got {policy!r}")
    eps = section.get("epsilon", default.epsilon)
    if not (_number(eps) and 0 <= eps <= 1):
        raise ConfigError(f"{where} epsilon: must be a number in [0, 1], got {eps!r}")
    temperature = section.get("temperature", default.temperature)
    if not (_number(temperature) and 0 < temperature < math.inf):
        raise ConfigError(f"{where} temperature: must be a number above 0 (in units of the request's score spread), "
                          f"got {temperature!r}")
    depth = section.get("depth", default.depth)
    if not (isinstance(depth, int) and not isinstance(depth, bool) and depth >= 1):
        raise ConfigError(f"{where} depth: must be a whole number of at least 1, got {depth!r}")
    return Exploration(policy, float(eps), float(temperature), depth)


def load_config(path: str | Path, *, env_keys: bool = False, require_keys: bool = False) -> ServiceConfig:
    """The service config in the TOML file at ``path``: the one loader of every command
    that takes ``--config`` and of the service's workers. ``env_keys``: add the API keys of
    the environment (``with_env_keys``); ``require_keys``: and check them (``check_keys``).
    Whatever is wrong (no such file, not TOML, a bad field, no keys) raises ConfigError
    with one line that names the file (and the field)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:  # missing, a folder, not readable
        raise ConfigError(f"{path}: cannot read the config: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text: {e}") from None
    try:
        cfg = parse_config(data, path.resolve().parent, path)
        if env_keys or require_keys:
            cfg.with_env_keys()
        if require_keys:
            cfg.check_keys()
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    return cfg


def resolve_loader(spec: str | None):
    """The model loader a config names ("module:function"), or None for the default."""
    if not spec:
        return None
    import importlib

    module, _, name = spec.partition(":")
    if not module or not name:
        raise ConfigError(f"[service] model_loader must be 'module:function', got {spec!r}")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"[service] model_loader {spec!r}: cannot be imported ({type(e).__name__}: {e})") from None
