"""The shared bottom layer: errors, deadlines, subprocesses, interrupts, names and pod states.

Nothing here imports another part of the package."""
