"""The long-running processes: settings, composition root, worker, relay, health, metrics, logs."""
