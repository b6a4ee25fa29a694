"""Passwords never shown: in the user-info part of a URL, in its query, in a driver's message."""

from __future__ import annotations

import pytest

from dynaflow.urls import display_url, hide_passwords


@pytest.mark.parametrize(
    "url, shown",
    [
        (
            "postgresql+psycopg://app:s3cret@db:5432/flows",
            "postgresql+psycopg://app:***@db:5432/flows",
        ),
        ("postgresql://app@db/flows?password=s3cret", "postgresql://app@db/flows?password=***"),
        (
            "postgresql://db/flows?sslmode=require&PASSWORD=s3cret&connect_timeout=3",
            "postgresql://db/flows?PASSWORD=***&connect_timeout=3&sslmode=require",
        ),
        (
            "postgresql://app@db/flows?sslpassword=s3cret",
            "postgresql://app@db/flows?sslpassword=***",
        ),
        ("postgresql://app:p@ss@db/flows", "postgresql://app:***@db/flows"),
        ("sqlite:///var/lib/app/dynaflow.db", "sqlite:///var/lib/app/dynaflow.db"),
        ("memory://", "memory://"),
    ],
)
def test_display_url_hides_every_password(url: str, shown: str) -> None:
    assert display_url(url) == shown
    assert display_url(display_url(url)) == shown  # showing a shown URL changes nothing


def test_a_malformed_url_is_masked_all_the_same() -> None:
    assert "s3cret" not in display_url("not a url password=s3cret")
    assert "s3cret" not in display_url("weird://u:s3cret@")


def test_messages_quoting_urls_or_connection_strings_are_masked() -> None:
    message = (
        "cannot open the database postgresql+psycopg://app@db/flows?password=s3cret: connection "
        "failed (host=db user=app password='s3cret'); also at postgresql://x:s3cret@other/db"
    )
    masked = hide_passwords(message)
    assert "s3cret" not in masked
    assert masked.count("***") == 3
    assert "connection failed (host=db user=app password=***)" in masked
