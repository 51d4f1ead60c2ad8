"""DRF content negotiation for endpoints whose answers have one format each (JSON, or the
recording's audio): DRF would otherwise answer an ``Accept`` it cannot satisfy with its own
406 before the view runs, so the view could not audit it, and a player's ``Accept: audio/*`` or
a scanner's ``text/html`` would be refused for no reason."""

from __future__ import annotations

from collections.abc import Iterable

from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request


class FixedFormat(DefaultContentNegotiation):
    """Answer with the view's first renderer whatever the client's ``Accept`` says (DRF's
    documented way to ignore it); request bodies are still parsed by their content type."""

    def select_renderer(
        self,
        request: Request,
        renderers: Iterable[BaseRenderer],
        format_suffix: str | None = None,
    ) -> tuple[BaseRenderer, str]:
        """The view's first renderer and its media type."""
        renderer = next(iter(renderers))
        return renderer, str(renderer.media_type)
