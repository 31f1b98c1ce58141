"""Inbound media (Meta, WhatsApp Cloud API "Media"): the rows the processing engine plans
(:mod:`.rows`), the storage behind one small interface (:mod:`.storage`), the download
through the Media API (:mod:`.fetch`) and the state machine that drives it
(:mod:`.download`). Nothing here is imported by the hot path except :mod:`.rows`."""
