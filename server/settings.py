"""Server settings: one dataclass, a docstring per field. Built by the CLI from flags and
environment variables; nothing else reads the environment."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

MiB = 1 << 20


@dataclass
class Settings:
    data_dir: Path = Path("./kerve-data")
    """Folder of the embedded storage: the SQLite database, blobs and temporary uploads."""

    host: str = "0.0.0.0"
    """Address the gRPC port binds to."""

    port: int = 8500
    """gRPC port for every service (0 picks a free one; see port_file)."""

    metrics_port: int = 8502
    """Prometheus /metrics port over HTTP (0 picks a free one, -1 turns it off)."""

    registry_url: str | None = None
    """SQLAlchemy URL of the metadata store; default sqlite under data_dir."""

    blob_url: str | None = None
    """Blob store URL; default the folder data_dir/blobs."""

    plugins: list[str] = field(default_factory=list)
    """Custom-object plugin modules to import (besides KERVE_PLUGINS and entry points)."""

    allow_unsafe_lambda: bool = False
    """Accept Lambda layers that hold Python bytecode (arbitrary code: trusted uploads only)."""

    device: str | None = None
    """TensorFlow device for models, e.g. /GPU:1 or /CPU:0; default the first GPU, else CPU."""

    max_message_bytes: int = 64 * MiB
    """Largest gRPC message accepted or sent (a request's tensors, an upload chunk)."""

    max_upload_bytes: int = 16 * 1024 * MiB
    """Largest upload, all parts together."""

    validation_isolated: bool = True
    """Validate uploads in a separate worker process rather than a thread of the server."""

    validation_timeout_s: float = 600.0
    """Longest a validation may take before it is stopped and the upload refused."""

    validation_memory_limit_bytes: int | None = None
    """Address-space limit of the validation worker (RLIMIT_AS); none by default."""

    poll_interval_s: float = 5.0
    """How often the server re-reads the registry for changes made by other replicas."""

    idle_unload_s: float = 300.0
    """A version loaded on demand (not a default) is unloaded after this long unused."""

    memory_budget_bytes: int | None = None
    """Weights bytes of loaded versions above which on-demand versions are unloaded, least
    recently used first, to make room (defaults are always kept); none by default."""

    max_batch_size: int = 128
    """Most rows the dynamic batcher merges into one model call (1 turns batching off);
    a version's kerve.max_batch_size tag overrides it."""

    batch_timeout_ms: float = 2.0
    """Longest a request waits for a fuller batch while another instance is busy; a
    version's kerve.batch_timeout_ms tag overrides it."""

    jit_compile: bool = False
    """Compile models with XLA by default (a version's kerve.jit_compile tag overrides)."""

    max_queue_size: int = 1024
    """Requests waiting per loaded version before new ones get RESOURCE_EXHAUSTED."""

    model_instances: int = 1
    """Model calls in flight per loaded version (threads running batches side by side)."""

    tokens_file: str | None = None
    """YAML/JSON mapping of bearer token to scope (read, write, admin); none: open server."""

    tls_cert: str | None = None
    """PEM certificate chain of the gRPC port; with tls_key, the port speaks TLS only."""

    tls_key: str | None = None
    """PEM private key of tls_cert."""

    tls_client_ca: str | None = None
    """PEM CA bundle: when set, clients must present a certificate it signed (mutual TLS)."""

    event_loop: str = "auto"
    """The asyncio loop the server runs on: "uvloop" (libuv; fewer microseconds per request
    and wake-up), "asyncio" (the standard library's), or "auto": uvloop where installed."""

    port_file: Path | None = None
    """Write the bound ports here as JSON once serving ({"port": ..., "metrics_port": ...})."""

    def database_url(self) -> str:
        return self.registry_url or f"sqlite:///{(self.data_dir / 'kerve.db').resolve()}"

    def blobs_url(self) -> str:
        return self.blob_url or str((self.data_dir / "blobs").resolve())
