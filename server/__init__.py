"""kerve's server: registry and inference over gRPC on one port."""
