"""Domain-agnostic model families: each takes its networks in and serves every domain."""
