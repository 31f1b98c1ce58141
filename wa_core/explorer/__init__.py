"""The webhook explorer (issue 13): find any landed webhook by the ids in it, trace what it
did, and the deliveries the receiver rejected. See :mod:`.keys`, :mod:`.search`,
:mod:`.trace` and :mod:`.rejections`."""
