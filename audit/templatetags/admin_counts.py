"""How many rows an admin list shows, in words: "1 entry", "10 entries", "1 recording".

Django's paginator line prints the model's ``verbose_name_plural`` after any count other than
one, which reads wrong where the plural names the list rather than its rows (the access log's
is "access log", the title of its page: "28 access log"). A ModelAdmin names its rows with
``count_nouns = (singular, plural)``; without it the model's verbose names are used. The
admin's ``pagination.html`` templates print the count through :func:`result_count_text`.
"""

from __future__ import annotations

from typing import Any

from django import template
from django.utils.formats import number_format

register = template.Library()


def count_nouns(model_admin: Any) -> tuple[str, str]:
    """The singular and plural a list's rows are counted in (see the module docstring)."""
    nouns = getattr(model_admin, "count_nouns", None)
    if nouns:
        return str(nouns[0]), str(nouns[1])
    opts = model_admin.model._meta
    return str(opts.verbose_name), str(opts.verbose_name_plural)


def count_text(count: int, nouns: tuple[str, str]) -> str:
    """``count`` followed by the singular for exactly one, the plural otherwise."""
    return f"{number_format(count, force_grouping=True)} {nouns[0] if count == 1 else nouns[1]}"


@register.filter
def result_count_text(cl: Any) -> str:
    """A change list's row count in words ("1 entry", "10 entries")."""
    return count_text(cl.result_count, count_nouns(cl.model_admin))


@register.filter
def plural_noun(cl: Any) -> str:
    """The plural a change list's rows are counted in ("entries")."""
    return count_nouns(cl.model_admin)[1]
