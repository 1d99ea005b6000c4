"""Tests of the container image and the Kubernetes / KServe manifests (no TensorFlow)."""
