"""The officer's evidence package journey in real headless Chromium: select recordings, give a
reason, ask for decrypted audio, download the package once written, and verify it offline
(a separate Python process without Django, settings or secrets): intact it passes, with one
flipped byte it is refused, naming the file. Screenshots go to ``test-artifacts/``."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from audit import evidence
from audit.models import AccessLog
from audit.sealer import seal_public_keys
from portal.tests.test_browser_admin import log_in, officer, snap  # noqa: F401 (fixture)
from recordings.lifecycle.evidence_package import evidence_package_run
from recordings.models import EvidencePackage
from recordings.tests.test_evidence_package import (  # noqa: F401 (fixture)
    data_offset,
    evidence_case,
    flip,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]


def verify_offline(package: Path, pem: Path) -> subprocess.CompletedProcess[str]:
    environment = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "recordings.lifecycle.evidence_verify",
            str(package),
            "--public-key",
            str(pem),
        ],
        env=environment,
        capture_output=True,
        text=True,
    )


def test_export_a_package_and_verify_it_offline(
    live_server,
    page,
    officer,  # noqa: F811
    evidence_case,  # noqa: F811
    tmp_path,
):
    plain, _, secret = evidence_case["recordings"]
    log_in(page, live_server, officer)

    page.goto(f"{live_server.url}/admin/recordings/recording/")
    page.check(f"#result_list tr:has-text('{plain.sid}') input.action-select")
    page.check(f"#result_list tr:has-text('{secret.sid}') input.action-select")
    page.select_option("select[name=action]", "export_evidence_package")
    page.click("button[name=index]")
    page.wait_for_selector("#package-preview")
    assert "Evidence package of 2 recordings" in page.locator("#package-preview").inner_text()
    snap(page, "evidence-1-form")

    page.click("input[name=confirm]")  # no reason: the browser asks for one first
    assert page.locator("#id_reason:invalid").count() == 1
    page.fill("#id_reason", "Subpoena 2026-114 from the regional court")
    page.check("#id_include_decrypted")
    page.click("input[name=confirm]")
    page.wait_for_selector("#packages")
    assert "queued" in page.locator("#packages .package-state").first.inner_text()
    package = EvidencePackage.objects.get()
    assert package.include_decrypted is True
    evidence_package_run(package_id=package.pk)  # what the worker does
    page.reload()
    assert "done" in page.locator("#packages .package-state").first.inner_text()
    snap(page, "evidence-2-done")
    with page.expect_download() as download:
        page.click("#packages .package-download")
    saved = tmp_path / "package.zip"
    download.value.save_as(saved)

    pem = tmp_path / "audit-public-key.pem"
    pem.write_text("".join(evidence.public_key_pem(k) for k in seal_public_keys().values()))
    good = verify_offline(saved, pem)
    assert good.returncode == 0, good.stderr
    assert good.stdout.startswith("OK: 2 recordings")
    with zipfile.ZipFile(saved) as archive:
        assert archive.read(f"media/{secret.sid}.wav") == evidence_case["ciphertext"]
        assert archive.read(f"decrypted/{secret.sid}.wav") == evidence_case["plaintext"]

    flip(saved, data_offset(saved, f"media/{secret.sid}.wav") + 1000)
    bad = verify_offline(saved, pem)
    assert bad.returncode == 1
    assert f"media/{secret.sid}.wav does not match the manifest" in bad.stderr

    row = AccessLog.objects.get(action="admin_export", reason_code="evidence_package")
    assert row.detail["decrypted"] == "yes"
    assert row.detail["package_sha256"] == EvidencePackage.objects.get().sha256
    assert AccessLog.objects.filter(reason_code="evidence_package_download").exists()
