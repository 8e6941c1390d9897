"""The Matrix connector's rules that need no homeserver: its settings, report reasons →
categories, which media checks are uploads, the media an event carries, and the webhook
signature (checked against Takedown's own signer)."""

from __future__ import annotations

import json

import pytest

from takedown.connectors.synapse_takedown import (
    DEFAULT_KEYWORDS,
    ConfigError,
    ConnectorConfig,
    category_for,
    event_media,
    is_upload,
    signature_ok,
)

BASE = {
    "takedown_url": "https://takedown.example/",
    "api_key": "tdk_x",
    "webhook_secret": "s" * 16,
    "admin_user": "@takedown:example.org",
    "admin_access_token": "syt_x",
    "homeserver_url": "http://127.0.0.1:8008",
    "operator_email": "abuse@example.org",
}


def test_settings_have_defaults_and_strip_trailing_slashes():
    config = ConnectorConfig.parse(BASE)
    assert config.takedown_url == "https://takedown.example"
    assert config.report_poll_seconds == 30
    assert config.keywords == DEFAULT_KEYWORDS
    assert config.redact_on_restrict and not config.fail_closed
    assert config.admin_token() == "syt_x"


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"takedown_url": None}, "`takedown_url` is required"),
        ({"api_key": 5}, "`api_key` must be a string"),
        ({"webhook_secret": "short"}, "at least 16 characters"),
        ({"admin_access_token": None}, "admin_access_token"),
        ({"admin_user": "takedown"}, "full user id"),
        ({"report_poll_seconds": 0}, "more than 0"),
        ({"report_poll_seconds": "often"}, "must be numbers"),
        ({"report_keywords": {"spam": ["x"]}}, "unknown category 'spam'"),
        ({"report_keywords": {"csam": "child"}}, "list of words"),
        ({"report_keywords": ["csam"]}, "maps a category"),
        ({"default_category": "bad"}, "unknown `default_category`"),
        # Without it every report of intimate imagery (or `other`) would be refused.
        ({"redact_on_restrict": "false"}, "`redact_on_restrict` is true or false"),
        ({"fail_closed": 1}, "`fail_closed` is true or false"),
        ({"operator_email": None}, "`operator_email` .* is required"),
        ({"operator_email": "abuse"}, "`operator_email` .* is required"),
    ],
)
def test_a_wrong_setting_is_refused_with_a_sentence(change: dict, says: str):
    with pytest.raises(ConfigError, match=says.replace("(", r"\(")):
        ConnectorConfig.parse({**BASE, **change})


def test_the_token_file_is_read_when_needed(tmp_path):
    path = tmp_path / "token"
    config = ConnectorConfig.parse(
        {**BASE, "admin_access_token": None, "admin_access_token_file": str(path)}
    )
    assert config.admin_token() is None  # not written yet: the module waits
    path.write_text("syt_from_file\n")
    assert config.admin_token() == "syt_from_file"


@pytest.mark.parametrize(
    ("reason", "category"),
    [
        ("This is CSAM", "csam"),
        ("a child in a sexual picture", "csam"),
        ("intimate photo of me posted without consent", "ncii"),
        ("NCII", "ncii"),
        ("an intimate image of a child", "csam"),  # child safety first
        ("spam", "other"),
        (None, "other"),
    ],
)
def test_report_reasons_map_to_categories_by_keyword(reason, category):
    assert category_for(reason, DEFAULT_KEYWORDS, "other") == category


def test_keywords_and_the_default_are_configurable():
    config = ConnectorConfig.parse(
        {**BASE, "report_keywords": {"ncii": ["Revenge"]}, "default_category": "csam"}
    )
    assert category_for("revenge porn", config.keywords, config.default_category) == "ncii"
    assert category_for("child", config.keywords, config.default_category) == "csam"


def test_only_local_uploads_are_screened():
    assert is_upload(None, False, None)
    assert not is_upload("remote.example", False, None)  # remote media fetched
    assert not is_upload(None, True, None)  # a URL preview
    assert not is_upload(None, False, object())  # a thumbnail Synapse made


def test_the_media_of_an_event():
    content = {
        "msgtype": "m.image",
        "url": "mxc://example.org/abc",
        "info": {"thumbnail_url": "mxc://example.org/thumb"},
    }
    assert event_media(content) == [("example.org", "abc"), ("example.org", "thumb")]
    assert event_media({"url": "https://not.mxc/x"}) == []
    assert event_media({"url": "mxc://example.org/a/b"}) == []
    assert event_media({}) == []


def test_the_signature_is_takedowns():
    from takedown.integrations.webhooks import sign

    secret, body = "s" * 32, json.dumps({"topic": "item.remove"}).encode()
    header = sign(secret, body, timestamp=1_800_000_000)
    assert signature_ok(secret, header, body, now=1_800_000_000)
    assert not signature_ok("t" * 32, header, body, now=1_800_000_000)
    assert not signature_ok(secret, header, body + b" ", now=1_800_000_000)
    assert not signature_ok(secret, header, body, now=1_800_000_000 + 301)  # a replay
    assert not signature_ok(secret, "garbage", body)
