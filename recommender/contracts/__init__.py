"""Loaders and writers for the file contracts (staff, banners, impressions,
requests, rankings). Every loader validates every row and raises ContractError naming the
file, line and field; nothing is silently skipped or half-loaded."""
from ._json import parse_unique
from .banners import load_banners, write_banners
from .impressions import ImpressionLog, iter_impression_rows, load_impressions, write_impressions
from .requests import load_rankings, load_requests, write_rankings, write_requests
from .staff import load_staff, write_staff

__all__ = [
    "ImpressionLog",
    "iter_impression_rows",
    "load_banners",
    "load_impressions",
    "load_rankings",
    "load_requests",
    "load_staff",
    "parse_unique",
    "write_banners",
    "write_impressions",
    "write_rankings",
    "write_requests",
    "write_staff",
]
