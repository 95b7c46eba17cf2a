"""Per-replica message router: consume, call the runtime, route, retry, DLQ, events, metrics."""
