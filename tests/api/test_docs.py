"""The API docs (Swagger UI and ReDoc) come from the installed drf-spectacular-sidecar, served by
the app: their pages name no outside host, so they work without internet, and their
Content-Security-Policy keeps the browser on this origin."""

from __future__ import annotations

import re

import pytest
from django.contrib.staticfiles import finders

from core.api.docs import SAME_ORIGIN_ONLY

ASSET = re.compile(r"""(?:src|href)=["']([^"']+)["']""")


@pytest.mark.parametrize(
    ("url", "bundle"),
    [
        ("/api/docs/", "drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js"),
        ("/api/redoc/", "drf_spectacular_sidecar/redoc/bundles/redoc.standalone.js"),
    ],
)
def test_docs_pages_load_nothing_from_outside(client, url, bundle):
    # Anonymous, like the schema they describe.
    response = client.get(url)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    # What the bundles would fetch by themselves (ReDoc's logo) the browser refuses.
    assert response["Content-Security-Policy"] == SAME_ORIGIN_ONLY
    html = response.content.decode()
    # No absolute URL at all: no CDN, no web fonts, no online validator badge.
    assert not re.findall(r"(?:https?:)?//[\w.-]+\.\w+", html), html
    assets = ASSET.findall(html)
    assert f"/static/{bundle}" in assets
    for asset in assets:
        assert asset.startswith("/static/"), asset
        assert finders.find(asset.removeprefix("/static/")), f"{asset} is not an installed file"
