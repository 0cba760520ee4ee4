"""The cluster lifecycle: render and create a vcluster, wait until ready, pause, resume, delete.

Its drivers, the chart, readiness probes, crash evidence, the connection and the handle
that tests get.
"""
