"""The shared bottom layer: errors, deadlines, subprocesses, interrupts, names, pod states and
the run's records.

Nothing here imports another part of the package.
"""
