"""Prometheus metrics of one API process, on a registry of its own (two apps in one process, as
in the tests, never count into each other)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Upload to answer on this machine's CPU is 0.2-3 s a radiograph; a batch of 32 up to a minute.
_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0)


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter(
            "review_api_requests", "HTTP requests answered", ("route", "method", "status"), registry=r
        )
        self.latency = Histogram(
            "review_api_request_seconds",
            "Time from request to answer",
            ("route",),
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.failures = Counter(
            "review_api_failures", "Inputs or requests refused or failed, by reason", ("route", "reason"), registry=r
        )
        self.model_load = Gauge(
            "review_model_load_seconds", "How long loading each model took in this process", ("model",), registry=r
        )
        self.model_trained = Gauge(
            "review_model_trained", "1 when a loaded model runs trained weights, 0 untrained", ("model",), registry=r
        )
        self.in_flight = Gauge("review_api_in_flight", "Inference requests being worked on now", registry=r)
        self.images = Counter("review_api_images", "Images analysed", ("route",), registry=r)
        self.verdicts = Counter(
            "review_api_verdicts", "Verdicts received (a retry of a stored one included)", registry=r
        )
        self.queued = Gauge(
            "review_jobs_waiting",
            "Background jobs waiting or running: this process's, or the workers' queue where there are workers",
            registry=r,
        )
