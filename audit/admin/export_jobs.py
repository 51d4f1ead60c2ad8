"""The officer's exports of the access log, and of the playback report, as background jobs.

A million rows take longer to write than any web request may last (gunicorn's timeout cut a
streamed export short after the answer had begun, so the officer got a truncated file that
looked whole). So the admin only checks the filter, records an ``AccessLogExport`` and queues
``audit.tasks.export_access_log``; the task applies the same filter as the list (the
ModelAdmin's own changelist, rebuilt from the stored query for the requesting officer), writes
the whole file to the portal's storage (django-storages: local files or the S3 bucket), and
records its row count and SHA-256, or the reason it failed. The officer downloads it from the
exports page, through the portal (no storage URL reaches a browser). Embedded mode, with no
broker, runs the task at once.

The playback report's CSV and PDF (``audit.admin.reports``) are jobs of the same kind: a month
of a busy centre's report takes longer than a request should, so the report page queues a job
(``kind`` playback_report, its query the report's) that this task writes with the report's own
CSV and PDF writers; the same exports page lists it, the same download serves it, the same
expiry deletes its file.

The task is defined here, beside the ModelAdmin it needs, and registered under its name when
Django loads the admin (every process that sets Django up does, the worker included); the
audit core does not import the console, which reads ``recordings``' models.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from datetime import UTC, datetime, timedelta
from typing import IO

from celery import current_app, shared_task
from django.conf import settings
from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.auth import get_user_model
from django.core.files import File
from django.core.files.storage import default_storage
from django.db.models import QuerySet
from django.http import HttpRequest, QueryDict
from django.utils import timezone

from audit.admin.filters import filter_problems
from audit.export import COLUMNS, EXPORT_COLUMNS, csv_lines, jsonl_lines, rows_with_people
from audit.models import AccessLog, AccessLogExport, ExportKind, ExportState

logger = logging.getLogger(__name__)

EXPORT_TASK = "audit.tasks.export_access_log"
EXPIRE_TASK = "audit.tasks.expire_access_log_exports"
EXPORT_FOLDER = "audit-exports"
EXTENSIONS = {"csv": "csv", "jsonl": "jsonl", "pdf": "pdf"}
# The start of a written file's name, by kind.
FILE_STEMS: dict[str, str] = {
    ExportKind.ACCESS_LOG: "access-log",
    ExportKind.PLAYBACK_REPORT: "playback-report",
}


def _changelist_queryset(*, query: str, username: str) -> QuerySet[AccessLog]:
    """The access log list's rows for ``query`` as the officer ``username`` sees them: the
    ModelAdmin's own filters and search, so the export is exactly the list."""
    request = HttpRequest()
    request.method = "GET"
    request.GET = QueryDict(query)
    request.user = get_user_model().objects.get(username=username)
    model_admin = admin.site.get_model_admin(AccessLog)
    queryset: QuerySet[AccessLog] = model_admin.get_changelist_instance(request).queryset
    return queryset


def export_queue(*, request: HttpRequest, fmt: str) -> AccessLogExport:
    """Check the list's filter in ``request`` (Django's ``IncorrectLookupParameters`` when it
    is not valid), record the export and have it written; answers the job."""
    model_admin = admin.site.get_model_admin(AccessLog)
    # A bad filter raises before anything is kept; so does a date the list left out.
    problems = filter_problems(model_admin.get_changelist_instance(request))
    if problems:
        raise IncorrectLookupParameters("; ".join(problems))
    job = AccessLogExport.objects.create(
        requested_by=request.user.get_username(), query=request.GET.urlencode(), format=fmt
    )
    export_start(job_id=job.pk)
    return job


def export_record(*, kind: str, requested_by: str, query: str, fmt: str) -> AccessLogExport:
    """Record a queued export of ``kind`` (not started yet: the caller audits the request
    first and hands its row's number to :func:`export_start`)."""
    return AccessLogExport.objects.create(
        kind=kind, requested_by=requested_by, query=query, format=fmt
    )


def export_start(*, job_id: int, audit_sequence: int | None = None) -> None:
    """Have a recorded export written: by the worker, or at once where there is no broker
    (embedded mode, tests). ``audit_sequence`` is the access-log row of the request."""
    if audit_sequence is not None:
        AccessLogExport.objects.filter(pk=job_id).update(audit_sequence=audit_sequence)
    if current_app.conf.task_always_eager:
        export_run(job_id=job_id)
    else:
        current_app.send_task(EXPORT_TASK, args=(job_id,))


def _access_log_write(job: AccessLogExport, spool: IO[bytes], digest: hashlib._Hash) -> int:
    """Write the log's rows the job's list filter selects; answers how many."""
    queryset = _changelist_queryset(query=job.query, username=job.requested_by)
    rows = rows_with_people(
        queryset.order_by("sequence").values_list(*COLUMNS).iterator(chunk_size=2000)
    )
    lines = (
        csv_lines(rows, spreadsheet_safe=True, columns=EXPORT_COLUMNS)
        if job.format == "csv"
        else jsonl_lines(rows, columns=EXPORT_COLUMNS)
    )
    lines_written = 0
    for line in lines:
        data = line.encode("utf-8")
        spool.write(data)
        digest.update(data)
        lines_written += 1
    return lines_written - (1 if job.format == "csv" else 0)  # a CSV starts with a header


def export_run(*, job_id: int) -> AccessLogExport:
    """Write one queued export to storage, whole, and record how it went (never raises)."""
    job = AccessLogExport.objects.get(pk=job_id)
    if job.state not in (ExportState.QUEUED, ExportState.RUNNING):
        return job
    AccessLogExport.objects.filter(pk=job.pk).update(state=ExportState.RUNNING)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    stem = FILE_STEMS.get(job.kind, "export")
    name = f"{EXPORT_FOLDER}/{stem}-{job.pk}-{stamp}.{EXTENSIONS.get(job.format, 'bin')}"
    try:
        if job.kind == ExportKind.PLAYBACK_REPORT:
            # Imported here: the report's views queue their files through this module.
            from audit.admin.reports import report_file_write

            write = report_file_write
        elif job.kind == ExportKind.ACCESS_LOG:
            write = _access_log_write
        else:
            raise ValueError(f"unknown export kind {job.kind!r}")
        digest = hashlib.sha256()
        with tempfile.TemporaryFile() as spool:
            written = write(job, spool, digest)
            spool.seek(0)
            stored = default_storage.save(name, File(spool, name=name))
    except Exception as exc:  # any failure is recorded and shown, never a silent short file
        logger.exception("%s export %s failed", job.kind, job.pk)
        AccessLogExport.objects.filter(pk=job.pk).update(
            state=ExportState.FAILED,
            error=f"{type(exc).__name__}: {exc}"[:2000],
            finished_at=timezone.now(),
        )
    else:
        AccessLogExport.objects.filter(pk=job.pk).update(
            state=ExportState.DONE,
            file_name=stored,
            rows=written,
            sha256=digest.hexdigest(),
            finished_at=timezone.now(),
        )
    return AccessLogExport.objects.get(pk=job.pk)


@shared_task(name=EXPORT_TASK, ignore_result=True)
def export_access_log(job_id: int) -> str:
    """Write a queued export, of the log or of a report (see the module docstring); answers
    its state."""
    return export_run(job_id=job_id).state


def exports_expire(*, now: datetime | None = None) -> int:
    """Delete the files of exports finished more than ``AUDIT_EXPORT_RETENTION_HOURS`` ago (a
    file of access-log rows is personal data; the officer downloaded it, or can export again)
    and mark them expired; answers how many. The job rows stay, as the record of the export."""
    cutoff = (now or timezone.now()) - timedelta(hours=settings.AUDIT_EXPORT_RETENTION_HOURS)
    expired = 0
    for job in AccessLogExport.objects.filter(state=ExportState.DONE, finished_at__lt=cutoff):
        default_storage.delete(job.file_name)
        AccessLogExport.objects.filter(pk=job.pk).update(state=ExportState.EXPIRED, file_name="")
        expired += 1
    return expired


@shared_task(name=EXPIRE_TASK, ignore_result=True)
def expire_access_log_exports() -> int:
    """Delete expired export files (hourly, from beat); answers how many."""
    return exports_expire()
