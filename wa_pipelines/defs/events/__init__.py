"""Event feed wiring: the long-lived push delivery run, its sensor, replay and retention."""
