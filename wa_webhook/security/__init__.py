"""Security helpers: webhook signatures (and, later, token encryption and API auth)."""
