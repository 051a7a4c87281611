"""The Procfile as a deployment runs it: its release step (collectstatic, migrate), then its web
command (gunicorn) with DJANGO_DEBUG=0, against the test database. The admin's CSS and
JavaScript, the API docs and their assets, /healthz and /favicon.ico all come from that one
process, with nothing in front of it."""

from __future__ import annotations

import gzip
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from email.message import Message
from pathlib import Path

import pytest
from django.db import connection

from tests.execution.conftest import ROOT, Proc, database_url, free_port, wait_until

pytestmark = pytest.mark.slow

STATIC_LINK = re.compile(r"""(?:href|src)=["'](/static/[^"']+)["']""")
# ManifestStaticFilesStorage's names: 12 hex digits of the content's MD5 before the extension.
HASHED = re.compile(r"\.[0-9a-f]{12}\.\w+$")
OUTSIDE = re.compile(r"(?:https?:)?//[\w.-]+\.\w+")


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(":", 1) for line in lines if line.strip() and not line.startswith("#"))


def get(url: str, **headers: str) -> tuple[int, Message, bytes]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def static_links(html: str) -> list[str]:
    links = STATIC_LINK.findall(html)
    assert links, html
    return links


@pytest.fixture
def deployment(transactional_db, tmp_path) -> dict[str, str]:
    """The environment of a production deployment: debug off, its own secret key, allowed hosts
    and STATIC_ROOT, the test database; `python` and `gunicorn` from this virtual environment."""
    env = {key: value for key, value in os.environ.items() if key not in {"DJANGO_DEBUG"}}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY="serving-test-secret-key",
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        DJANGO_STATIC_ROOT=str(tmp_path / "static"),
        DATABASE_URL=database_url(connection.settings_dict),
        PORT=str(free_port()),
        WEB_CONCURRENCY="2",
        PYTHONUNBUFFERED="1",
    )
    return env


def test_procfile_serves_the_console_as_shipped(deployment, tmp_path):
    commands = {name: command.strip() for name, command in procfile().items()}
    release = subprocess.run(
        ["bash", "-c", commands["release"]],
        cwd=ROOT,
        env=deployment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert release.returncode == 0, release.stdout + release.stderr
    assert (tmp_path / "static" / "staticfiles.json").exists()

    # The web command as it stands, listening on the loopback only.
    web = commands["web"]
    assert web.startswith("gunicorn jobsconsole.wsgi ") and "--bind 0.0.0.0:" in web, web
    log = tmp_path / "web.log"
    popen = subprocess.Popen(
        ["bash", "-c", "exec " + web.replace("--bind 0.0.0.0:", "--bind 127.0.0.1:")],
        cwd=ROOT,
        env=deployment,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    proc = Proc("web", popen, log)
    base = f"http://127.0.0.1:{deployment['PORT']}"

    def logs() -> str:
        return log.read_text(errors="replace")[-5000:]

    def answers() -> tuple[int, Message, bytes] | None:
        if popen.poll() is not None:
            pytest.fail(f"gunicorn exited with {popen.returncode}\n{logs()}")
        try:
            return get(f"{base}/healthz")
        except OSError:  # not listening yet
            return None

    try:
        status, headers, body = wait_until(
            answers, timeout=60, what="gunicorn to answer /healthz", logs=logs
        )
        assert (status, headers["Content-Type"], body) == (
            200,
            "application/json",
            b'{"status": "ok", "database": "ok"}',
        ), logs()

        # The admin: every stylesheet, script and icon of the login page under its hashed name,
        # cached for ever and compressed for who accepts it.
        status, _, body = get(f"{base}/admin/login/")
        assert status == 200, logs()
        links = static_links(body.decode())
        assert any(re.search(r"/admin/css/base\.\w+\.css$", link) for link in links), links
        assert any(link.endswith(".js") for link in links), links
        assert any("/core/favicon." in link for link in links), links
        for link in links:
            assert HASHED.search(link), f"{link} is not a hashed name"
            status, headers, content = get(base + link, **{"Accept-Encoding": "gzip"})
            assert status == 200, link
            assert "immutable" in headers["Cache-Control"], link
            if headers["Content-Encoding"] == "gzip":
                content = gzip.decompress(content)
            assert content, link
        base_css = next(link for link in links if "/admin/css/base." in link)
        assert get(base + base_css, **{"Accept-Encoding": "gzip"})[1]["Content-Encoding"] == "gzip"
        # The unhashed name answers too (bookmarks, old pages), just not cached for ever.
        status, headers, _ = get(f"{base}/static/admin/css/base.css")
        assert status == 200
        assert headers["Content-Type"].startswith("text/css")

        # The API docs: Swagger UI and ReDoc from the sidecar, nothing from outside.
        for page, bundle in (
            ("/api/docs/", "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle."),
            ("/api/redoc/", "/static/drf_spectacular_sidecar/redoc/bundles/redoc.standalone."),
        ):
            status, headers, body = get(base + page)
            assert status == 200, page
            assert headers["Content-Security-Policy"].startswith("default-src 'self' "), page
            html = body.decode()
            assert not OUTSIDE.findall(html), html
            links = static_links(html)
            assert any(link.startswith(bundle) for link in links), links
            for link in links:
                assert HASHED.search(link), f"{link} is not a hashed name"
                assert get(base + link)[0] == 200, link
        status, headers, _ = get(f"{base}/api/schema/?format=json")
        assert status == 200
        assert headers["Content-Type"].startswith("application/vnd.oai.openapi+json")

        status, headers, body = get(f"{base}/favicon.ico")
        assert status == 200
        assert headers["Content-Type"] == "image/vnd.microsoft.icon"
        assert body[:4] == b"\x00\x00\x01\x00"
    finally:
        proc.stop()
    assert popen.poll() is not None
