"""Options that several commands share."""
from __future__ import annotations

import json

from recommender.domain import FrequencyCap


def default_cap(text: str | None) -> FrequencyCap | None:
    """The value of ``--default-cap`` (a frequency cap as JSON, e.g. ``{"per_day": 3}``), or
    None without one; raises ValueError with a one-line message naming the option."""
    if not text:
        return None
    from recommender.contracts.banners import cap_from_dict

    try:
        return cap_from_dict(json.loads(text), "--default-cap")
    except ValueError as e:  # invalid JSON, or a FieldError naming the part
        raise ValueError(f"--default-cap: {e}") from None


def service_config(path, *, require_keys: bool = False, loader: bool = False):
    """The service config at ``path`` (service.config.ServiceConfig), for every command
    that takes ``--config``. ``require_keys``: with the environment's API keys, checked;
    ``loader``: also returns its model loader (``resolve_loader``), as ``(config, loader)``.
    A config that cannot be used raises ConfigError with one line naming the file (and
    the field): ``recommender`` prints it and exits 2."""
    from service.config import ConfigError, load_config, resolve_loader

    cfg = load_config(path, require_keys=require_keys)
    if not loader:
        return cfg
    try:
        return cfg, resolve_loader(cfg.model_loader)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
