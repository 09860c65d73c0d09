"""Talking to Asterisk: the AGI protocol, the FastAGI server and its routes,
the ARI client (and its opt-in recorder) and the listener that records what
became of each call."""
