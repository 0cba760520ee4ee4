"""The host side: the kind or existing cluster that runs the vclusters, and what lives on it.

Lock-file leases, readiness, images, run liveness, host namespaces, pausing and the reaper.
Nothing here knows about a vcluster's lifecycle."""
