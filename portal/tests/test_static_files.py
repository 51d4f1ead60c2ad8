"""The admin's static files are served in production by WhiteNoise, from what ``collectstatic``
(run by the Dockerfile) put in ``STATIC_ROOT``; tests run with ``DEBUG`` off, as production."""

from __future__ import annotations

from django.core.management import call_command


def test_admin_static_files_are_served_from_static_root(client, settings, tmp_path):
    settings.STATIC_ROOT = tmp_path
    call_command("collectstatic", interactive=False, verbosity=0)
    response = client.get("/static/admin/css/base.css")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/css")
    served = b"".join(response.streaming_content)
    assert served == (tmp_path / "admin" / "css" / "base.css").read_bytes()
    assert client.get("/static/admin/css/no-such-file.css").status_code == 404
