"""Server settings: the one place every setting and its default is written.

Each field has a docstring, which is its help text. ``kerve serve`` derives one flag per field
from this class (``--max-batch-size`` for ``max_batch_size``), and every field can also be set
through the environment as ``KERVE_<FIELD>`` (``KERVE_MAX_BATCH_SIZE=64``), which is how a
container is configured. A flag beats the environment, which beats the default. Nothing else
in kerve reads the environment for a setting.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "KERVE_"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, use_attribute_docstrings=True,
                                      extra="forbid", validate_assignment=True)

    role: Literal["all", "registry", "inference"] = "all"
    """What this server does: "registry" takes uploads, aliases, listing and downloads and
    loads no model; "inference" serves models and refuses writes; "all" does both."""

    model_dir: Path | None = None
    """Single-model mode (KServe's /mnt/models): serve the .keras archive, or architecture
    JSON + .weights.h5, found in this folder as --model-name, validated like an upload;
    no other storage flag is needed."""

    model_name: str | None = None
    """The name the model of --model-dir is served under."""

    data_dir: Path = Path("./kerve-data")
    """Folder of the embedded storage: the SQLite database, blobs and temporary uploads.
    With --model-dir and no --data-dir: kerve-NAME in the system's temporary folder, so
    that single-model mode writes nothing into the working directory."""

    host: str = "localhost"
    """Address the gRPC and metrics ports bind to: loopback by default; ``::`` (or
    ``0.0.0.0``) for every interface, IPv4 and IPv6 (then writes need --tokens)."""

    port: int = Field(8500, ge=0, le=65535)
    """gRPC port for every service (0 picks a free one; see --port-file)."""

    metrics_port: int = Field(8502, ge=-1, le=65535)
    """Prometheus /metrics port over HTTP (0 picks a free one, -1 turns it off)."""

    registry_url: str | None = None
    """SQLAlchemy URL of the registry database (sqlite:///..., postgresql+psycopg://...);
    default: SQLite under the data dir."""

    blob_url: str | None = None
    """Where blobs are stored: a folder or file:// URL, or s3://BUCKET/PREFIX (credentials
    from the standard AWS variables and chain; the bucket must exist); default: the data
    dir's blobs/."""

    s3_endpoint: str | None = None
    """S3 endpoint URL for S3-compatible stores (SeaweedFS, MinIO, ...); default: AWS's."""

    s3_region: str | None = None
    """S3 region; default: from the AWS configuration."""

    plugins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, json_schema_extra={"flag": "plugin"})
    """Custom-object plugin module to import (besides the kerve.plugins entry points);
    the environment takes a comma-separated list."""

    allow_unsafe_lambda: bool = False
    """Accept Lambda layers that hold Python bytecode (arbitrary code: trusted uploads only)."""

    device: str | None = None
    """TensorFlow device for models, e.g. /GPU:1 or /CPU:0; default: the first GPU, else the
    CPU."""

    max_message_mb: int = Field(64, gt=0)
    """Largest gRPC message accepted or sent, MiB (a request's tensors, an upload chunk)."""

    max_upload_mb: int = Field(16384, gt=0)
    """Largest upload, all parts together, MiB."""

    validate_in_process: bool = False
    """Validate uploads in a thread of the server instead of an isolated worker process
    (for debugging the validator; uploads are untrusted input)."""

    validation_timeout: float = Field(600.0, gt=0)
    """Seconds a validation may take before it is stopped and the upload refused."""

    validation_memory_mb: int | None = Field(None, gt=0)
    """Address-space limit of the validation worker (RLIMIT_AS), MiB; none by default."""

    max_architecture_kb: int = Field(4096, gt=0)
    """Largest architecture (Keras config JSON, or an archive's config.json), KiB: a config
    is kilobytes to a few megabytes; a larger one is refused before it is read."""

    max_archive_members: int = Field(64, gt=0)
    """Most members a .keras archive may hold (Keras writes three, plus assets)."""

    max_archive_member_mb: int = Field(64, gt=0)
    """Largest member of a .keras archive besides its config and weights (metadata,
    assets), MiB, as its directory declares; the weights member is bounded by
    --max-upload-mb."""

    max_config_depth: int = Field(100, gt=0)
    """Deepest nesting of JSON objects and lists in an architecture (a functional model
    nests about 15 deep, each nested model about 10 more)."""

    max_layers: int = Field(10000, gt=0)
    """Most layers an architecture may list, nested models' layers included."""

    max_weight_datasets: int = Field(100000, gt=0)
    """Most datasets (variables) a weights HDF5 file may hold."""

    max_weight_dataset_mb: int = Field(8192, gt=0)
    """Largest size one weights dataset may declare (shape x item size), MiB; all datasets
    together may declare no more than the file holds."""

    orphan_grace: float = Field(3600.0, ge=0)
    """Seconds after which, at start-up, a blob no version references is deleted (an upload
    or deletion cut short by a crash); younger ones may belong to an upload in progress on
    another replica. The upload temporary folder is emptied at start-up."""

    poll_interval: float = Field(5.0, gt=0)
    """Seconds between re-reads of the registry (changes made through other replicas)."""

    drain_seconds: float = Field(10.0, ge=0)
    """On SIGTERM: seconds the calls in flight (uploads included) get to finish before
    they are cancelled. Keep it below the pod's terminationGracePeriodSeconds."""

    strict_readiness: bool = True
    """Ready (health SERVING, v2 ServerReady) only while every model has a version answering
    its default requests: a model whose default version FAILED to load, with no earlier one
    in its place, makes the server unready, so that Kubernetes and KServe send it nothing.
    --no-strict-readiness: ready once every default has settled, READY or FAILED (partial
    service)."""

    idle_unload: float = Field(300.0, ge=0)
    """Seconds a version loaded on demand (not a default) stays loaded unused."""

    memory_budget_mb: int | None = Field(None, gt=0)
    """MiB the loaded versions may need together, each counted for its memory estimate
    (weights, activations at its largest batch, overhead; `kerve models show` prints it).
    A load past it first unloads on-demand versions no request holds, least recently used
    first (defaults are always kept), and is refused with RESOURCE_EXHAUSTED where that is
    not enough. None by default: on a GPU, a load is still refused past its free memory."""

    weight_swap_in_place: bool = True
    """Load a new default that has the architecture and serving options of the one it
    replaces (a weights-only version) by assigning its weights into the serving model
    between requests: no second copy of the model, no retrace. Off: every version is built
    and loaded in full beside the old one."""

    max_batch_size: int = Field(128, ge=1, le=4096)
    """Most rows the dynamic batcher merges into one model call (1 turns batching off); a
    version's kerve.max_batch_size tag overrides it."""

    batch_timeout_ms: float = Field(2.0, ge=0)
    """Longest a request waits for a fuller batch while another instance is busy, ms; a
    version's kerve.batch_timeout_ms tag overrides it."""

    jit_compile: bool = False
    """Compile models with XLA (a version's kerve.jit_compile tag overrides it)."""

    max_queue_size: int = Field(1024, ge=1)
    """Requests waiting per loaded version before new ones get RESOURCE_EXHAUSTED."""

    model_instances: int = Field(1, ge=1)
    """Model calls in flight per loaded version (threads running batches side by side)."""

    max_connection_age: float | None = Field(None, gt=0)
    """Seconds after which a client connection is closed (gracefully, after its calls end),
    so that clients reconnect and spread over replicas behind one Service; none by default."""

    tokens_file: str | None = Field(None, json_schema_extra={"flag": "tokens"})
    """YAML/JSON mapping of bearer token to scope (read, write, admin); none: an open
    server."""

    allow_open_writes: bool = False
    """Without --tokens, take uploads, alias moves, deletions, loads and unloads from any
    client. Without it and without tokens, writes are taken only by a server that listens
    on loopback alone (--host localhost, the default). For a server behind a network
    policy that already decides who reaches it. Reads are open either way."""

    tls_cert: str | None = None
    """PEM certificate chain of the gRPC port; with --tls-key, the port speaks TLS only."""

    tls_key: str | None = None
    """PEM private key of --tls-cert."""

    tls_client_ca: str | None = None
    """PEM CA bundle: when set, clients must present a certificate it signed (mutual TLS)."""

    event_loop: Literal["auto", "uvloop", "asyncio"] = "auto"
    """The asyncio loop: uvloop (fewer microseconds per request), the standard library's,
    or auto: uvloop where installed."""

    port_file: Path | None = None
    """Write the bound ports here as JSON once listening ({"port": ..., "metrics_port": ...})."""

    demo: bool = False
    """Upload a small demo model named 'demo' if the registry lacks one."""

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """Least severe log messages printed."""

    @field_validator("host")
    @classmethod
    def _bare_host(cls, value: str) -> str:
        # Stored without brackets; bind_address() adds them where gRPC needs them.
        return value.strip().removeprefix("[").removesuffix("]")

    @property
    def loopback_only(self) -> bool:
        """Whether the ports are reachable from this machine alone."""
        import ipaddress

        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False  # a host name: it may resolve to any interface

    def bind_address(self, port: int) -> str:
        """``host:port`` as gRPC takes it, IPv6 in brackets."""
        return f"[{self.host}]:{port}" if ":" in self.host else f"{self.host}:{port}"

    @field_validator("plugins", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [name.strip() for name in value.split(",") if name.strip()]
        return value

    @model_validator(mode="after")
    def _pairs(self) -> "Settings":
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("--tls-cert and --tls-key go together")
        if bool(self.model_dir) != bool(self.model_name):
            raise ValueError("--model-dir and --model-name go together")
        if self.model_dir and self.role != "all":
            raise ValueError("--model-dir serves one model on its own: --role must be all")
        if self.model_dir and "data_dir" not in self.model_fields_set:
            self.data_dir = Path(tempfile.gettempdir()) / f"kerve-{self.model_name}"
        return self

    @property
    def serves_models(self) -> bool:
        return self.role in ("all", "inference")

    @property
    def takes_writes(self) -> bool:
        return self.role in ("all", "registry")

    # --- derived values ---------------------------------------------------------------

    def database_url(self) -> str:
        return self.registry_url or f"sqlite:///{(self.data_dir / 'kerve.db').resolve()}"

    def blobs_url(self) -> str:
        return self.blob_url or str((self.data_dir / "blobs").resolve())

    @property
    def blob_cache_dir(self) -> Path:
        """Where a remote blob store's blobs are kept locally, checked by sha256."""
        return self.data_dir / "blob-cache"

    @property
    def max_message_bytes(self) -> int:
        return self.max_message_mb << 20

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb << 20

    @property
    def memory_budget_bytes(self) -> int | None:
        return self.memory_budget_mb << 20 if self.memory_budget_mb else None

    def serving_defaults(self):
        """Each version's serving options where its tags set none."""
        from kerve.registry.serving_options import ServingOptions

        return ServingOptions(max_batch_size=self.max_batch_size,
                              batch_timeout_ms=self.batch_timeout_ms,
                              jit_compile=self.jit_compile)

    def upload_limits(self):
        from kerve.registry.limits import UploadLimits

        return UploadLimits(
            architecture_bytes=self.max_architecture_kb << 10,
            archive_members=self.max_archive_members,
            archive_member_bytes=self.max_archive_member_mb << 20,
            config_depth=self.max_config_depth, layers=self.max_layers,
            weight_datasets=self.max_weight_datasets,
            weight_dataset_bytes=self.max_weight_dataset_mb << 20)

    @property
    def validation_memory_limit_bytes(self) -> int | None:
        return self.validation_memory_mb << 20 if self.validation_memory_mb else None


def flag_name(name: str) -> str:
    """The ``kerve serve`` flag of a settings field."""
    extra = Settings.model_fields[name].json_schema_extra or {}
    return "--" + str(extra.get("flag", name)).replace("_", "-")


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()
