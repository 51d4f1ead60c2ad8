"""Audit: who may open which recording, and the tamper-evident log of every decision."""
