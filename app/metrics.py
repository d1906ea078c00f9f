"""Prometheus metrics, one registry per app instance (several apps can live in one test process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.stage_seconds = Histogram(
            "facegate_stage_seconds",
            "Time spent per pipeline stage (per request).",
            ["stage"],
            buckets=_STAGE_BUCKETS,
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "facegate_frames_request_seconds",
            "Whole frames request latency, upload to decision.",
            buckets=_STAGE_BUCKETS,
            registry=self.registry,
        )
        self.decisions = Counter(
            "facegate_decisions_total",
            "Access decisions by reason.",
            ["decision", "reason"],
            registry=self.registry,
        )
        self.enrolments = Counter(
            "facegate_enrolments_total", "Enrolment attempts by outcome.", ["outcome"], registry=self.registry
        )
        self.gallery_templates = Gauge(
            "facegate_gallery_templates", "Templates in this replica's index.", registry=self.registry
        )
        self.gallery_people = Gauge(
            "facegate_gallery_people", "People in this replica's index.", registry=self.registry
        )
        self.inference_queue = Gauge(
            "facegate_inference_queue", "Requests waiting for or in inference.", registry=self.registry
        )
