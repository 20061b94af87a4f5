"""Probes: measuring instruments that take a model handle and a prompt set and return a ProbeResult."""
