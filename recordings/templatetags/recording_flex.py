"""Template tags of the recording page's Flex section (``{% load recording_flex %}``)."""

from __future__ import annotations

from typing import Any

from django import template

from recordings.flex.conversation import ConversationLink, recording_conversations
from recordings.models import Recording

register = template.Library()


@register.simple_tag(takes_context=True)
def recording_flex(context: dict[str, Any], recording: Recording | None) -> dict[str, Any]:
    """The recording's Flex conversations (``recordings.flex.conversation``) and whether the
    viewer may attach it to Flex again (change permission on recordings)."""
    if recording is None or recording.pk is None:
        return {"links": [], "can_attach": False}
    request = context.get("request")
    can_attach = bool(request is not None and request.user.has_perm("recordings.change_recording"))
    links: list[ConversationLink] = recording_conversations(recording=recording)
    return {"links": links, "can_attach": can_attach}
