"""Node daemon: resource detection, heartbeat/reconcile, supervision of replica processes."""
