"""/favicon.ico, answered by the app on every page's behalf."""

from __future__ import annotations

from core.views import FAVICON


def test_favicon_is_served_without_login(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/vnd.microsoft.icon"
    assert "max-age" in response["Cache-Control"]
    assert response.content == FAVICON.read_bytes()
    assert response.content[:4] == b"\x00\x00\x01\x00"  # an ICO file
    assert client.head("/favicon.ico").status_code == 200
    assert client.post("/favicon.ico").status_code == 405
