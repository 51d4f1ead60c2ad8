"""A paginator for the access log's admin list that never counts the whole table.

Django's changelist asks its paginator for ``count`` on every page view; on a log of millions
of rows ``SELECT COUNT(*)`` is a full scan. The log's ``sequence`` counts 1, 2, 3…, so the
unfiltered count is ``MAX(sequence)``, one step down the unique index; a number taken by an
append that rolled back (rare; the seals state each one) is counted too, so the last page may
hold a row or two fewer than the total says.
A filtered list is counted only up to :data:`COUNT_LIMIT` rows (``COUNT(*)`` over a ``LIMIT``
subquery): past that the page says "more than 10,000" and the officer narrows the filter.

The unfiltered list, newest first, is paged by ``sequence`` instead of ``OFFSET`` (which reads
and drops every row before the page: the last page of ten million rows read them all): page
``n`` holds the sequences ``head - n·size`` (exclusive) to ``head - (n-1)·size``, one seek down
the unique index whatever the page. A missing number leaves its page a row short, never shows a
row twice or skips one. A filtered list never pages past ``COUNT_LIMIT`` rows, so its ``OFFSET``
stays short.
"""

from __future__ import annotations

from django.core.paginator import Page, Paginator
from django.db.models import Max, QuerySet
from django.utils.functional import cached_property

from audit.models import AccessLog

COUNT_LIMIT = 10_000


class AccessLogPaginator(Paginator):
    """Pages of ``AccessLog`` rows with a cheap ``count`` (see the module docstring)."""

    @property
    def _queryset(self) -> QuerySet[AccessLog]:
        """The rows paged: the changelist always hands its paginator a queryset."""
        if not isinstance(self.object_list, QuerySet):
            raise TypeError(
                f"AccessLogPaginator pages a QuerySet, not a {type(self.object_list).__name__}"
            )
        return self.object_list

    @cached_property
    def count(self) -> int:
        """The number of rows, exact when unfiltered or at most ``COUNT_LIMIT``; otherwise
        ``COUNT_LIMIT + 1`` (see :attr:`count_capped`)."""
        queryset = self._queryset
        if not queryset.query.where:
            return queryset.aggregate(head=Max("sequence"))["head"] or 0
        return queryset.order_by()[: COUNT_LIMIT + 1].count()

    def page(self, number: int | str) -> Page:
        """Page ``number``; the unfiltered list newest first by ``sequence`` range (see the
        module docstring), any other list as Django pages it."""
        queryset = self._queryset
        # The changelist orders by the admin's ordering after the model's: the same field twice.
        if queryset.query.where or tuple(dict.fromkeys(queryset.query.order_by)) != ("-sequence",):
            return super().page(number)
        number = self.validate_number(number)
        top = self.count - (number - 1) * self.per_page
        rows = queryset.filter(sequence__lte=top, sequence__gt=top - self.per_page)
        return Page(rows, number, self)

    @property
    def count_capped(self) -> bool:
        """True when ``count`` stopped at the limit: there are more rows than it says."""
        return bool(self._queryset.query.where) and self.count > COUNT_LIMIT
