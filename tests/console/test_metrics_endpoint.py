"""The console serves Prometheus metrics at /metrics, behind its token like every page."""

from __future__ import annotations

from dynaflow import World, metrics

from . import actions
from .conftest import ClientFactory


def test_metrics_are_served_behind_the_token(make_client: ClientFactory) -> None:
    client = make_client(token="s3cret-token")
    assert client.get("/metrics").status_code != 200
    answer = client.get("/metrics", headers={"Authorization": "Bearer s3cret-token"})
    assert answer.status_code == 200
    assert "# TYPE" in answer.text  # prometheus_client's text format


def test_the_endpoint_shows_what_an_installed_world_measured(
    make_client: ClientFactory, console_world: World
) -> None:
    installed = metrics.install(console_world)
    try:
        console_world.plan(actions.Release, ["api"])
        text = make_client().get("/metrics").text
        assert 'dynaflow_plans_total{result="pending",state="planned"}' in text
    finally:
        installed.uninstall()


def test_no_endpoint_when_asked_for_none(make_client: ClientFactory) -> None:
    assert make_client(metrics=False).get("/metrics").status_code == 404
