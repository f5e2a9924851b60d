"""Uploads on S3-compatible object storage (SERVICEDESK_STORAGE=s3, django-storages): stored in
the bucket, never on local disk, still served only by the app to those allowed, attached to
emails from there. Against moto's S3 server on 127.0.0.1 (real HTTP, the same boto3 calls)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import boto3
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from moto.server import ThreadedMotoServer

from issues.models import OutboundEmail, Upload
from issues.selectors import upload_email_token
from tests.harness.services import free_port
from tests.issues.test_outbound import PNG, new_email_issue, send_pending
from tests.mailroom.helpers import ALIAS, INCOMING, deliver

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]
BUCKET = "servicedesk-uploads"
KEYS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing-secret"}


@pytest.fixture(scope="module")
def s3_server() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def bucket(s3_server, settings, tmp_path, redis_cache_flushed):  # type: ignore[no-untyped-def]
    """A fresh bucket, and the app's uploads in it (the settings SERVICEDESK_STORAGE=s3 makes)."""
    client = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1", **KEYS)
    name = f"{BUCKET}-{free_port()}"
    client.create_bucket(Bucket=name)
    settings.MEDIA_ROOT = tmp_path / "media"  # must stay empty
    settings.SERVICEDESK_MAILBOXES = {"incoming_email": INCOMING, "service_desk_email": ALIAS}
    settings.DEFAULT_FROM_EMAIL = "support@servicedesk.test"
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": name, "endpoint_url": s3_server, "region_name": "us-east-1",
                "access_key": KEYS["aws_access_key_id"],
                "secret_key": KEYS["aws_secret_access_key"],
                "location": "uploads", "default_acl": None, "file_overwrite": True,
            },
        },
    }  # fmt: skip
    return Bucket(client, name)


class Bucket:
    def __init__(self, client, name: str) -> None:  # type: ignore[no-untyped-def]
        self.client, self.name = client, name

    def objects(self) -> dict[str, bytes]:
        """Every object in the bucket: key → content (read over S3, as a second machine would)."""
        listed = self.client.list_objects_v2(Bucket=self.name).get("Contents", [])
        read = lambda key: self.client.get_object(Bucket=self.name, Key=key)["Body"].read()  # noqa: E731
        return {item["Key"]: read(item["Key"]) for item in listed}


def test_comment_files_live_in_the_bucket_and_are_served_only_to_the_allowed(
    client, project, reporter, outsider, bucket, smtp, settings
) -> None:
    issue = new_email_issue(project)
    OutboundEmail.objects.exclude(kind="team").delete()
    client.force_login(reporter)
    files = [
        SimpleUploadedFile("log.txt", b"line 1\nline 2\n", content_type="text/plain"),
        SimpleUploadedFile("shot.png", PNG, content_type="image/png"),
    ]
    response = client.post(
        reverse("note_add", args=[project.full_path, issue.iid]),
        {"body": "See attached.", "files": files},
    )
    assert response.status_code == 302
    log, shot = Upload.objects.filter(issue=issue).order_by("filename")
    stored = bucket.objects()
    assert stored == {
        f"uploads/{log.file.name}": b"line 1\nline 2\n",
        f"uploads/{shot.file.name}": PNG,
    }
    assert not Path(settings.MEDIA_ROOT).exists()

    # Read back through the app, with its headers: the bucket is never linked.
    page = client.get(reverse("upload", args=[shot.pk, "shot.png"]))
    assert (page.status_code, b"".join(page.streaming_content)) == (200, PNG)
    assert page["Content-Type"] == "image/png"
    assert page["Content-Security-Policy"] == "default-src 'none'; sandbox"
    page = client.get(reverse("upload", args=[log.pk, "log.txt"]))
    assert b"".join(page.streaming_content) == b"line 1\nline 2\n"
    assert page["Content-Type"] == "application/octet-stream"
    assert page["Content-Disposition"].startswith("attachment")
    issue_page = client.get(issue.get_absolute_url()).content.decode()
    assert reverse("upload", args=[shot.pk, "shot.png"]) in issue_page
    assert settings.STORAGES["default"]["OPTIONS"]["endpoint_url"] not in issue_page

    client.force_login(outsider)
    assert client.get(reverse("upload", args=[shot.pk, "shot.png"])).status_code == 404
    client.logout()
    assert client.get(reverse("upload", args=[shot.pk, "shot.png"])).status_code == 302  # login

    # The email's link works without login, and its attachments come from the bucket.
    token = upload_email_token(log)
    page = client.get(reverse("upload_by_token", args=[token, "log.txt"]))
    assert b"".join(page.streaming_content) == b"line 1\nline 2\n"
    assert client.get(reverse("upload_by_token", args=[token + "x", "log.txt"])).status_code == 404
    send_pending()
    message = smtp.wait_for(1)[0].message
    attached = {part.get_filename(): part.get_content() for part in message.iter_attachments()}
    assert attached["shot.png"] == PNG
    assert attached["log.txt"].replace("\r\n", "\n") == "line 1\nline 2\n"


def test_files_of_inbound_email_go_to_the_bucket(client, project, reporter, bucket) -> None:
    message = EmailMessage()
    message["From"] = "Jake <jake@customer.example>"
    message["To"] = INCOMING.address_for(project.service_desk.default_key)
    message["Subject"] = "Screenshot"
    message.set_content("It looks like this.")
    message.add_attachment(PNG, maintype="image", subtype="png", filename="crash.png")
    row = deliver(message.as_bytes())
    assert row.outcome == "issue_created", row.reason
    [upload] = Upload.objects.filter(issue_id=row.issue_id)
    assert bucket.objects() == {f"uploads/{upload.file.name}": PNG}
    client.force_login(reporter)
    page = client.get(reverse("upload", args=[upload.pk, "crash.png"]))
    assert b"".join(page.streaming_content) == PNG


def test_the_setting_selects_the_backend() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SERVICEDESK_", "DATABASE_"))}
    script = (
        "import django.conf as c; s = c.settings; "
        "print(s.STORAGES['default']['BACKEND'], s.STORAGES['default'].get('OPTIONS', {}))"
    )
    run = lambda **extra: subprocess.run(  # noqa: E731
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**env, "DJANGO_SETTINGS_MODULE": "servicedesk.settings", **extra},
    )  # fmt: skip
    assert run().stdout.startswith("django.core.files.storage.FileSystemStorage {}")
    s3 = run(
        SERVICEDESK_STORAGE="s3", SERVICEDESK_S3_BUCKET="files",
        SERVICEDESK_S3_ENDPOINT_URL="http://minio:9000", SERVICEDESK_S3_ACCESS_KEY_ID="k",
        SERVICEDESK_S3_SECRET_ACCESS_KEY="s",
    ).stdout  # fmt: skip
    assert s3.startswith("storages.backends.s3.S3Storage {'bucket_name': 'files', ")
    assert "'endpoint_url': 'http://minio:9000'" in s3
    assert "'default_acl': None" in s3
    wrong = run(SERVICEDESK_STORAGE="ftp")
    assert "SERVICEDESK_STORAGE must be 'local' or 's3'" in wrong.stderr
