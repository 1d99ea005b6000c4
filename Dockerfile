# syntax=docker/dockerfile:1
# kerve container image.
#
#   docker build -t kerve .                              # CPU (default)
#   docker build --build-arg VARIANT=gpu -t kerve:gpu .  # NVIDIA GPU: TensorFlow's CUDA wheels
#
# The install is the README's (`pip install .`), done as a wheel: the builder stage runs
# `pip wheel --no-deps .` on the checkout and installs that wheel into a venv at /opt/kerve,
# which the runtime stage copies. The GPU variant adds `tensorflow[and-cuda]` (the NVIDIA
# CUDA/cuDNN libraries as pip wheels, the way TensorFlow documents for Linux) at the same
# version pin as pyproject.toml; the host needs the NVIDIA driver and container toolkit
# (on Kubernetes: the NVIDIA device plugin), nothing else. Settings come from KERVE_* variables.
# The venv keeps the bytecode pip compiled: the root filesystem may be read-only at run time.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ARG VARIANT=cpu
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY server/ server/
COPY registry/ registry/
COPY clients/ clients/
COPY protos/ protos/
RUN pip wheel --no-deps --wheel-dir /wheels . \
    && python -m venv /opt/kerve \
    && /opt/kerve/bin/pip install /wheels/kerve-*.whl \
    && if [ "$VARIANT" = "gpu" ]; then \
           /opt/kerve/bin/pip install "tensorflow[and-cuda]==2.21.*"; \
       elif [ "$VARIANT" != "cpu" ]; then \
           echo "VARIANT must be cpu or gpu, not '$VARIANT'" >&2; exit 1; \
       fi

FROM ${PYTHON_IMAGE} AS runtime
ARG VARIANT=cpu
LABEL org.opencontainers.image.title="kerve" \
      org.opencontainers.image.description="Registry and gRPC inference server for Keras models" \
      org.opencontainers.image.licenses="Apache-2.0" \
      io.kerve.variant="${VARIANT}"
RUN groupadd --system --gid 10001 kerve \
    && useradd --system --uid 10001 --gid 10001 --home-dir /home/kerve --create-home \
               --shell /usr/sbin/nologin kerve \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/kerve
COPY --from=builder /opt/kerve /opt/kerve
ENV PATH=/opt/kerve/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    KERAS_HOME=/tmp/keras \
    TF_CPP_MIN_LOG_LEVEL=1 \
    KERVE_HOST=0.0.0.0 \
    KERVE_PORT=8500 \
    KERVE_METRICS_PORT=8502 \
    KERVE_DATA_DIR=/var/lib/kerve
USER 10001:10001
WORKDIR /var/lib/kerve
VOLUME ["/var/lib/kerve"]
EXPOSE 8500 8502
HEALTHCHECK --interval=30s --timeout=10s --start-period=120s --retries=3 \
    CMD ["kerve", "health", "--server", "127.0.0.1:8500"]
ENTRYPOINT ["kerve"]
CMD ["serve"]
