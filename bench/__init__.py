"""Benchmarks: each script serves the portal under gunicorn on loopback and prints figures."""
