"""Connecting to pods inside a vcluster: the TCP tunnel and the port-forward targets."""
