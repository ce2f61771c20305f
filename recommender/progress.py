"""Progress bars for long work (simulate, train, evaluate), on stderr, off when not a TTY
unless forced, so logs and tests stay clean."""
from __future__ import annotations

import os
import sys
from typing import Iterable, TypeVar

from tqdm import tqdm

T = TypeVar("T")


def enabled() -> bool:
    flag = os.environ.get("RECOMMENDER_PROGRESS")
    if flag is not None:
        return flag not in ("0", "false", "no", "")
    return sys.stderr.isatty()


def progress_bar(iterable: Iterable[T] | None = None, **kwargs) -> tqdm:
    kwargs.setdefault("disable", not enabled())
    kwargs.setdefault("file", sys.stderr)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)
