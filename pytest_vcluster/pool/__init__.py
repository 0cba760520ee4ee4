"""The clusters of one pytest process: the per-run factory, lookahead and xdist workers."""
