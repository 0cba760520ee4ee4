"""The one timeout of every single Kubernetes API request the plugin makes."""

from __future__ import annotations

__all__ = ["API_TIMEOUT"]

#: Seconds one API request may take. Waits poll with many short requests against their own
#: deadline, so a request that hangs (a host under load, a dropped connection) costs one poll,
#: not the wait.
API_TIMEOUT = 15.0
