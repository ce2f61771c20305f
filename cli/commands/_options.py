"""Options that several commands share."""
from __future__ import annotations

import json
import sys

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


def service_config(path):
    """The service config at ``path`` (service.config.ServiceConfig), or None after
    printing why it cannot be read (the command then exits with 2)."""
    from service.config import ConfigError, load_config

    try:
        return load_config(path)
    except (ConfigError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return None
