"""Prometheus metrics: requests and latency per endpoint, rankings, impressions and clicks
per arm, the model version per arm. With several uvicorn workers, ``recommender serve``
sets PROMETHEUS_MULTIPROC_DIR so that /metrics adds up every worker.

``ServiceMetrics`` holds its own registry, so that each app (a worker, or a test) has its
own series and nothing lives at module level."""
from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
KNOWN_ENDPOINTS = frozenset({"/v1/rank", "/v1/events", "/v1/banners", "/v1/staff", "/v1/admin/reload",
                             "/v1/admin/arms", "/v1/admin/forget", "/v1/goals", "/healthz", "/readyz", "/metrics", "/v1/noop"})


def endpoint_label(path: str) -> str:
    return path if path in KNOWN_ENDPOINTS else "other"


class ServiceMetrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("recommender_http_requests_total", "HTTP requests", ["endpoint", "method", "status"],
                                registry=r)
        self.latency = Histogram("recommender_http_request_duration_seconds",
                                 "HTTP request latency in the worker, from when its bytes were read (the requests admitted)", ["endpoint"],
                                 buckets=_BUCKETS, registry=r)
        self.rankings = Counter("recommender_rankings_total", "rankings served", ["arm", "model_version", "explored"],
                                registry=r)
        self.impressions = Counter("recommender_impressions_total", "banners shown (the request's slots)", ["arm"],
                                   registry=r)
        self.clicks = Counter("recommender_clicks_total", "click events stored (duplicates excluded)", ["arm"],
                              registry=r)
        self.outcomes = Counter("recommender_outcomes_total", "outcome events stored (duplicates excluded)",
                                ["arm", "type"], registry=r)
        self.duplicates = Counter("recommender_duplicate_events_total", "events received again (not stored twice)",
                                  registry=r)
        self.flagged = Counter("recommender_flagged_events_total", "events stored with a flag", ["status"], registry=r)
        self.rank_seconds = Histogram("recommender_rank_seconds",
                                      "time inside the engine per ranking (features, model, rules)", ["arm"],
                                      buckets=(5e-5, 1e-4, 2e-4, 3e-4, 5e-4, 7.5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 5e-2),
                                      registry=r)
        self.shed = Counter("recommender_shed_requests_total", "requests answered 503 because the worker was full",
                            ["endpoint"], registry=r)
        self.ranking_log_dropped = Counter("recommender_ranking_log_dropped_total",
                                           "rankings served but not logged (the store refused them)", registry=r)
        self.open_rankings = Gauge("recommender_open_rankings", "rankings held open to clicks (the largest worker)",
                                   multiprocess_mode="livemax", registry=r)
        self.open_rankings_evicted = Gauge("recommender_open_rankings_evicted",
                                           "rankings let go before their click window ended, over the bound "
                                           "(the largest worker, since it started)",
                                           multiprocess_mode="livemax", registry=r)
        self.arm_share = Gauge("recommender_arm_share", "each arm's share of the staff now", ["arm"],
                               multiprocess_mode="mostrecent", registry=r)
        self.ramp_clicks = Gauge("recommender_ramp_clicks_per_request",
                                 "a ramp's arms: clicks per request since it began", ["arm", "role"],
                                 multiprocess_mode="mostrecent", registry=r)
        self.ramp_difference = Gauge("recommender_ramp_difference",
                                     "a ramp's new arm minus its control, clicks per request, with its always-valid "
                                     "interval", ["bound"], multiprocess_mode="mostrecent", registry=r)
        self.model_info = Gauge("recommender_model_info", "1 for the model version each arm serves",
                                ["arm", "model_version"], multiprocess_mode="liveall", registry=r)
        self.goal = Gauge("recommender_goal", "each delivery goal: its target, what it delivered, what the even plan "
                          "has by now, and the pacing boost (the largest worker's view)", ["banner_id", "metric", "value"],
                          multiprocess_mode="livemax", registry=r)
        self._children: dict[tuple, object] = {}
        self._request_series: dict[tuple[str, str, int], tuple] = {}
        self._rank_series: dict[tuple[str, str, bool], tuple] = {}
        self._shown_versions: set[tuple[str, str]] = set()

    def _child(self, metric, *labels: str):
        """``metric.labels(*labels)``, remembered: the lookup costs more than the increment,
        and a ranking updates three series."""
        key = (metric, labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def observe_request(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        # every request passes here: one lookup for both series' bound methods
        key = (endpoint, method, status)
        series = self._request_series.get(key)
        if series is None:
            series = self._request_series[key] = (self._child(self.requests, endpoint, method, str(status)).inc,
                                                  self._child(self.latency, endpoint).observe)
        series[0]()
        series[1](seconds)

    def observe_shed(self, path: str, method: str) -> None:
        """A request admission control answered 503 (not in the latency histogram, which
        holds the requests admitted)."""
        endpoint = endpoint_label(path)
        self._child(self.shed, endpoint).inc()
        self._child(self.requests, endpoint, method, "503").inc()

    def observe_online(self, online) -> None:
        """The open rankings of this worker's click history (called by the store follower
        every sync, and at each scrape)."""
        counts = online.counts()
        self.open_rankings.set(counts["open_rankings"])
        self.open_rankings_evicted.set(online.evicted)

    def observe_goals(self, progress) -> None:
        """Each delivery goal's progress (recommender.goals.GoalProgress)."""
        for g in progress:
            for value, v in (("target", g.target), ("delivered", g.delivered), ("planned", g.planned),
                             ("boost", g.boost)):
                self.goal.labels(g.banner_id, g.metric, value).set(v)

    def observe_arms(self, shares: dict[str, float], ramp) -> None:
        """The arms' shares and a ramp's comparison (service.ramp.RampStatus, or None)."""
        for arm, share in shares.items():
            self.arm_share.labels(arm).set(share)
        if ramp is not None:
            self.ramp_clicks.labels(ramp.arm, "new").set(ramp.new_clicks_per_request)
            self.ramp_clicks.labels(ramp.control, "control").set(ramp.control_clicks_per_request)
            for bound, value in (("value", ramp.difference), ("low", ramp.low), ("high", ramp.high)):
                self.ramp_difference.labels(bound).set(value)

    def observe_rank(self, outcome, seconds: float) -> None:
        r = outcome.result
        key = (outcome.arm, r.model_version, r.explored)
        series = self._rank_series.get(key)
        if series is None:
            series = self._rank_series[key] = (
                self._child(self.rankings, outcome.arm, r.model_version, "true" if r.explored else "false").inc,
                self._child(self.impressions, outcome.arm).inc, self._child(self.rank_seconds, outcome.arm).observe)
        series[0]()
        n = min(outcome.slots, len(r))
        if n:
            series[1](n)
        series[2](seconds)

    def observe_events(self, outcome, arms_of_stored: dict[str, str], events=()) -> None:
        """``events``: the batch (recommender.store.ClickEvent), to tell outcomes from clicks."""
        kinds = {e.event_id: e.type for e in events}
        for eid in outcome.stored:
            kind = kinds.get(eid, "click")
            if kind == "click":
                self._child(self.clicks, arms_of_stored.get(eid, "unknown")).inc()
            else:
                self._child(self.outcomes, arms_of_stored.get(eid, "unknown"), kind).inc()
        if outcome.duplicates:
            self.duplicates.inc(len(outcome.duplicates))
        for status in outcome.flagged.values():
            self._child(self.flagged, status).inc()

    def set_model_versions(self, arms: dict) -> None:
        """1 for each arm's current version, 0 for versions it served before (clearing
        labels is not possible in multi-process mode)."""
        now = {(name, st.version) for name, st in arms.items()}
        for labels in self._shown_versions - now:
            self.model_info.labels(*labels).set(0)
        for labels in now:
            self.model_info.labels(*labels).set(1)
        self._shown_versions.update(now)

    def render(self) -> tuple[bytes, str]:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            reg = CollectorRegistry()
            multiprocess.MultiProcessCollector(reg)
            return generate_latest(reg), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
