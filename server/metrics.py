"""Prometheus metrics, in their own CollectorRegistry built by the composition root."""

from __future__ import annotations

from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (.0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5, 10)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Metrics:
    """Every kerve_ metric. Label values stay bounded: models, versions, API names, codes."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter("kerve_requests", "Inference requests by outcome",
                                ["model", "version", "api", "code"], registry=r)
        self.request_duration = Histogram(
            "kerve_request_duration_seconds", "Inference request latency inside the server",
            ["model", "api"], buckets=_LATENCY_BUCKETS, registry=r)
        self.queue_duration = Histogram(
            "kerve_queue_duration_seconds", "Time a batch's oldest request waited in the queue",
            ["model"], buckets=_LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("kerve_batch_size", "Rows per model call", ["model"],
                                    buckets=_BATCH_BUCKETS, registry=r)
        self.models_loaded = Gauge("kerve_models_loaded", "Model versions loaded and ready",
                                   registry=r)
        self.model_load_seconds = Histogram(
            "kerve_model_load_seconds", "Time to load and warm up a version", ["model"],
            buckets=(.1, .25, .5, 1, 2, 5, 10, 30, 60, 120, 300), registry=r)
        self.model_loads = Counter(
            "kerve_model_loads", "Versions made ready, by how: built in full, or weights "
            "swapped into the model of the version they replace", ["model", "kind"], registry=r)
        self.uploads = Counter("kerve_uploads", "Uploads by outcome", ["code"], registry=r)
        self.gpu_memory = Gauge("kerve_gpu_memory_bytes", "GPU memory TensorFlow holds",
                                ["device"], registry=r)

    def track_memory(self, loaded: Callable[[], list], budget_bytes: int | None) -> None:
        """At each scrape: each loaded or loading version's memory estimate (what the budget
        counts it for), their sum, and the budget."""
        self.registry.register(_MemoryCollector(loaded, budget_bytes))

    def track_gpu_memory(self, devices: list[str]) -> None:
        """Report TensorFlow's current memory use per GPU at each scrape."""
        import tensorflow as tf

        for device in devices:
            def current(device: str = device) -> float:
                try:
                    return float(tf.config.experimental.get_memory_info(device)["current"])
                except (ValueError, RuntimeError):
                    return 0.0
            self.gpu_memory.labels(device=device).set_function(current)


class _MemoryCollector:
    """kerve_model_memory_estimate_bytes and the budget, read from the manager at scrape."""

    def __init__(self, loaded: Callable[[], list], budget_bytes: int | None) -> None:
        self._loaded = loaded
        self._budget = budget_bytes

    def describe(self):
        return []  # collected on demand only: nothing to check at registration

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        per_version = GaugeMetricFamily(
            "kerve_model_memory_estimate_bytes", "Estimated memory of each loaded or loading "
            "version (weights, activations at its largest batch, overhead)",
            labels=["model", "version"])
        total = 0
        for served in self._loaded():
            per_version.add_metric([served.name, str(served.version)], served.memory_bytes)
            total += served.memory_bytes + served.loading_bytes
        yield per_version
        yield GaugeMetricFamily("kerve_memory_estimated_in_use_bytes",
                                "Sum of the estimates of loaded and loading versions "
                                "(loading ones with what they hold only while loading)",
                                value=total)
        if self._budget is not None:
            yield GaugeMetricFamily("kerve_memory_budget_bytes",
                                    "The memory budget (--memory-budget-mb)",
                                    value=self._budget)
