"""The event feed: an ordered, replayable stream of events per organization (issue "event feed").

- :mod:`.outbox`: events written in the same transaction as their change, exactly once,
  with per-organization cursors in commit order;
- :mod:`.produce`: the events of the core changes (messages, statuses, contacts…);
- :mod:`.feed`: reading the feed after a cursor (the pull API) and purging old events;
- :mod:`.push`: signed delivery to each organization's endpoint (Standard Webhooks).
"""
