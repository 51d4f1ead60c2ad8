"""Pieces of the OpenAPI document (``/api/schema/``, drf-spectacular) that several of the
portal's public endpoints share."""

from __future__ import annotations

from drf_spectacular.utils import inline_serializer
from rest_framework import serializers

ERROR_SCHEMA = inline_serializer(
    "Error", fields={"error": serializers.CharField(), "detail": serializers.CharField()}
)
"""The body of every error answer: ``{"error": "<machine_code>", "detail": "<sentence>"}``."""
