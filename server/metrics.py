"""Prometheus metrics, in their own CollectorRegistry built by the composition root."""

from __future__ import annotations

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
