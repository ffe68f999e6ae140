"""Attack: read /metrics (release state, traffic, error rates) from outside. Without
PARLEY_METRICS_TOKEN it answers local callers only — not one a proxy forwarded; with a token,
only its bearer; PARLEY_METRICS_LISTEN serves it on an internal listener."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.security.conftest import Deployment, deployment, error_code
from tests.support.servers import free_port

TOKEN = "metrics-scrape-token-1234"


def test_a_local_scrape_works_on_the_embedded_default(shared: Deployment) -> None:
    response = httpx.get(f"{shared.url}/metrics")

    assert response.status_code == 200
    assert "parley_release_kill_switch" in response.text


def test_a_request_a_local_proxy_forwarded_is_refused(shared: Deployment) -> None:
    response = httpx.get(f"{shared.url}/metrics", headers={"X-Forwarded-For": "203.0.113.9"})

    assert response.status_code == 403
    assert error_code(response) == "ERR_FORBIDDEN"
    assert "parley_" not in response.text


@pytest.fixture(scope="module")
def behind_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with deployment(
        tmp_path_factory.mktemp("proxy"), PARLEY_TRUSTED_PROXIES='["127.0.0.1"]'
    ) as found:
        yield found


def test_a_remote_client_behind_a_trusted_proxy_is_refused(behind_proxy: Deployment) -> None:
    response = httpx.get(f"{behind_proxy.url}/metrics", headers={"X-Forwarded-For": "203.0.113.9"})

    assert response.status_code == 403


@pytest.fixture(scope="module")
def with_token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Deployment, int]]:
    port = free_port()
    with deployment(
        tmp_path_factory.mktemp("token"),
        PARLEY_METRICS_TOKEN=TOKEN,
        PARLEY_METRICS_LISTEN=f"127.0.0.1:{port}",
    ) as found:
        yield found, port


@pytest.mark.parametrize(
    "header", [None, "Bearer wrong-token", f"Basic {TOKEN}", f"Bearer {TOKEN}x"]
)
def test_without_the_token_the_api_port_refuses(
    with_token: tuple[Deployment, int], header: str | None
) -> None:
    d, _ = with_token
    headers = {"Authorization": header} if header else {}

    response = httpx.get(f"{d.url}/metrics", headers=headers)

    assert response.status_code == 401
    assert "parley_" not in response.text


def test_the_token_and_the_internal_listener_serve_the_metrics(
    with_token: tuple[Deployment, int],
) -> None:
    d, port = with_token

    by_token = httpx.get(f"{d.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    internal = httpx.get(f"http://127.0.0.1:{port}/metrics")

    assert by_token.status_code == 200 and "parley_stream_connections" in by_token.text
    assert internal.status_code == 200 and "parley_stream_connections" in internal.text
