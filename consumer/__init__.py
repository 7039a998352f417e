"""paylink processes and wiring: settings, composition root, worker, relay, CLI."""
