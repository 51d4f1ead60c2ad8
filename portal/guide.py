"""The officers' guide (``docs/officers.md``) as an admin page, so an officer reads it where they
work, behind the same login (and TOTP) as the console (registered on the admin site by
``recordings.admin``, beside the other pages that belong to no model).

Rendered with markdown-it-py (CommonMark, raw HTML off: the file is ours, but nothing in it can
inject markup) once per process; the file only changes with a deploy.
"""

from __future__ import annotations

import functools

from django.conf import settings
from django.contrib.admin import AdminSite
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt

GUIDE = "docs/officers.md"


@functools.cache
def officers_guide_html() -> SafeString:
    """``docs/officers.md`` as HTML (raw HTML in the file is escaped, not passed through)."""
    text = (settings.BASE_DIR / GUIDE).read_text(encoding="utf-8")
    renderer = MarkdownIt("commonmark", {"html": False}).enable("table")
    return mark_safe(renderer.render(text))  # noqa: S308 - markdown-it escapes, html is off


def officers_guide(request: HttpRequest, *, site: AdminSite) -> HttpResponse:
    """The guide, for any staff member the admin lets in."""
    context = {
        **site.each_context(request),
        "title": "Officers' guide",
        "guide": officers_guide_html(),
    }
    return TemplateResponse(request, "admin/officers_guide.html", context)


def guide_urls(site: AdminSite) -> list[URLPattern]:
    """The guide's URL under the admin (``admin:officers_guide``), behind the site's login."""
    view = site.admin_view(functools.partial(officers_guide, site=site))
    return [path("guide/officers/", view, name="officers_guide")]
