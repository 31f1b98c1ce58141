"""Onboarding follow-up: the ``finish_onboarding`` job and its sensor."""
