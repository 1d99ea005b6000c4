"""kerve's registry: the persistent catalogue of model versions (metadata + blobs)."""
