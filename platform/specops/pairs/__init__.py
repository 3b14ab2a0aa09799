"""Pair versions: the PairSpec, the qualification gate, and the demo pair trained on this machine."""
