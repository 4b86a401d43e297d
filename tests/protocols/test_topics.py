"""The topic tree, without a broker."""

from __future__ import annotations

import pytest

from delgrad.errors import ParameterError
from delgrad.protocols import (
    POLICIES,
    TopicInfo,
    TopicKind,
    parse_topic,
    policy_for,
    subscription,
    topic,
    topic_matches,
)
from delgrad.protocols._topics import validate_pattern, validate_publish_topic


@pytest.mark.parametrize(
    ("kind", "name", "expected"),
    [
        ("events/in", None, "delgrad/v1/dev1/events/in"),
        ("labels", None, "delgrad/v1/dev1/labels"),
        ("predictions", None, "delgrad/v1/dev1/predictions"),
        ("params/latest", None, "delgrad/v1/dev1/params/latest"),
        ("params/delta", None, "delgrad/v1/dev1/params/delta"),
        ("metrics", None, "delgrad/v1/dev1/metrics"),
        ("status", None, "delgrad/v1/dev1/status"),
        ("cmd", "reset", "delgrad/v1/dev1/cmd/reset"),
        ("cmd/reply", "reset", "delgrad/v1/dev1/cmd/reset/reply"),
    ],
)
def test_build_and_parse(kind: str, name: str | None, expected: str) -> None:
    assert topic("dev1", kind, name=name) == expected
    assert parse_topic(expected) == TopicInfo("dev1", TopicKind(kind), name)


@pytest.mark.parametrize(
    "bad",
    ["", "a/b", "-x", "x" * 65, "dev+1", "dev#", "dev/1", "$SYS", "dév"],
)
def test_invalid_device_ids(bad: str) -> None:
    with pytest.raises(ParameterError):
        topic(bad, "status")


@pytest.mark.parametrize(
    "bad",
    [
        "delgrad/v2/dev1/status",
        "delgrad/v1/dev1/unknown",
        "delgrad/v1/dev1/cmd",
        "delgrad/v1/dev1/cmd/x/other",
        "delgrad/v1/+/status",
        "other/v1/dev1/status",
    ],
)
def test_parse_rejects(bad: str) -> None:
    with pytest.raises(ParameterError):
        parse_topic(bad)


def test_name_rules() -> None:
    with pytest.raises(ParameterError):
        topic("dev1", "cmd")  # needs a name
    with pytest.raises(ParameterError):
        topic("dev1", "status", name="x")
    with pytest.raises(ParameterError):
        topic("dev1", "nope")


def test_policies() -> None:
    assert set(POLICIES) == set(TopicKind)
    assert policy_for("delgrad/v1/d/params/latest").retain
    assert policy_for("delgrad/v1/d/status").retain and policy_for("delgrad/v1/d/status").qos == 1
    assert policy_for("delgrad/v1/d/events/in").qos == 0
    assert policy_for("delgrad/v1/d/metrics").expiry_s == 60
    assert policy_for("delgrad/v1/d/cmd/x").qos == 1
    assert policy_for("some/other/topic").qos == 0


def test_subscriptions_match_what_they_should() -> None:
    cmds = subscription("dev1", "cmd")
    assert topic_matches(cmds, topic("dev1", "cmd", name="reset"))
    assert not topic_matches(cmds, topic("dev1", "cmd/reply", name="reset"))
    replies = subscription("dev1", "cmd/reply")
    assert topic_matches(replies, topic("dev1", "cmd/reply", name="reset"))
    everyone = subscription(kind="status")
    assert topic_matches(everyone, "delgrad/v1/a/status")
    assert topic_matches(everyone, "delgrad/v1/b/status")
    assert not topic_matches(everyone, "delgrad/v1/b/metrics")
    assert topic_matches(subscription("dev1"), "delgrad/v1/dev1/params/latest")


@pytest.mark.parametrize(
    ("pattern", "t", "expected"),
    [
        ("a/#", "a", True),
        ("a/#", "a/b/c", True),
        ("a/+", "a/b", True),
        ("a/+", "a/b/c", False),
        ("a/+/c", "a/b/c", True),
        ("+/+", "a", False),
        ("#", "$SYS/x", False),
        ("a/b", "a/b/", False),
        ("a/b/", "a/b/", True),
    ],
)
def test_wildcard_matching(pattern: str, t: str, expected: bool) -> None:
    assert topic_matches(pattern, t) is expected


@pytest.mark.parametrize("bad", ["a/#/b", "a+", "a/b#", "", "#/a"])
def test_bad_patterns(bad: str) -> None:
    with pytest.raises(ParameterError):
        validate_pattern(bad)


def test_publish_topics_have_no_wildcards() -> None:
    with pytest.raises(ParameterError):
        validate_publish_topic("a/+/b")
    assert validate_publish_topic("a/b") == "a/b"
