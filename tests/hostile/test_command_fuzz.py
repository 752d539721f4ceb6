"""Any text typed after `/ops` gets a parsed command or a usage error that says what is wrong,
never an exception of ours that is not for the user, nor anyone else's: in the parser, through
the dispatcher (no "internal error", nothing logged with a traceback), and as signed slash
commands over a real socket (no 5xx)."""

from __future__ import annotations

import asyncio
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.commands import Command, parse
from bot.config import Settings
from bot.errors import UsageError
from bot.registry import Registry
from bot.runbooks.loader import Catalog, load_catalog
from bot.runbooks.params import coerce_params
from bot.services import Services
from tests.conftest import dispatch
from tests.hostile.conftest import examples
from tests.slack.test_slack_requests import barrier
from tests.support.slack_standin import SlackDriver

# Words people (and attackers) type: verbs, apps, flags, values in other scripts, quotes,
# template and markup syntax, control characters, very long words.
VOCABULARY = [
    "help", "status", "deploy", "rollback", "scale", "restart", "history", "diag", "backup",
    "create", "list", "describe", "restore", "verify", "schedule", "approve", "deny", "pending",
    "cancel", "silence", "automation", "pause", "resume", "unlock", "run", "runbooks", "logs",
    "metrics", "graph", "locks", "executions", "silences", "unsilence", "promote", "abort",
    "shop-api", "shop-web", "shop-worker", "--env", "prod", "staging", "--reason", "--dry-run",
    "--dry-run=yes", "--to", "--for", "--ttl", "--into", "--since", "--tail", "--emergency",
    "--env=", "--", "-", "=", "app=shop-api", "replicas=3", "replicas=٣", "3", "٣", "５", "-1",
    "99999999999999999999", "1e3", "0x10", "99999999999d", "1h", "0s", "rq-01JABCDEF",
    "'", '"', "\\", "'unbalanced", "\"a b\"", "{{ 7*7 }}", "{% for x in y %}",
    "{{ ''.__class__.__mro__ }}", "<!channel>", "<@U0BOB>", "*bold*", "`code`", "&amp;",
    "../..", "a/b", "%2F", "ѕhop-api", "shop-api\n", "\x00", "\u202e", "\ud800", "x" * 300,
]

VERBS = ["status", "deploy", "rollback", "scale", "restart", "history", "diag", "promote",
         "abort", "backup create", "backup list", "backup describe", "backup restore",
         "backup verify", "backup schedule", "backup pause", "approve", "deny", "pending",
         "cancel", "silence", "automation pause", "automation resume", "automation status",
         "unlock", "run scale", "run deploy", "run silence", "runbooks", "help", "logs",
         "locks", "executions"]
words = st.one_of(st.sampled_from(VOCABULARY), st.sampled_from(VOCABULARY), st.text(max_size=30))
# Mostly a real verb with hostile arguments, so parsing gets past the verb; sometimes anything.
commands = st.tuples(st.sampled_from(VERBS), st.lists(words, max_size=6)).map(
    lambda parts: " ".join([parts[0], *parts[1]]))
texts = st.one_of(commands, commands, commands, st.lists(words, max_size=8).map(" ".join),
                  st.text(max_size=200))
# What a Slack client can send: text that is UTF-8 (no lone surrogates).
sendable = st.one_of(
    st.sampled_from([w for w in VOCABULARY if w != "\ud800"]),
    st.text(st.characters(exclude_categories=["Cs"]), max_size=30),
)


@pytest.fixture
def catalog(registry: Registry) -> Catalog:
    return load_catalog([], registry)


@examples(300)
@given(text=texts)
def test_any_text_parses_or_is_a_usage_error(
        catalog: Catalog, offline_settings: Settings, text: str) -> None:
    try:
        command = parse(text, catalog)
    except UsageError as exc:
        assert str(exc).strip(), "a usage error must say what is wrong"
        return
    assert isinstance(command, Command)
    if command.runbook is not None:
        env = command.env or offline_settings.default_environment
        try:
            coerce_params(command.runbook, command.raw_params, settings=offline_settings,
                          environment=env)
        except UsageError as exc:
            assert str(exc).strip()


@examples(120)
@given(text=texts, user=st.sampled_from(["alice", "mallory"]))
def test_any_text_through_the_dispatcher_gets_an_answer_and_no_internal_error(
        offline: Services, caplog: pytest.LogCaptureFixture, text: str, user: str) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.clear()
    outcome, rep = asyncio.run(dispatch(offline, text, user))
    # Offline (no cluster), a command that gets past its checks fails at Kubernetes: that is
    # an answer too. What may not happen is an unexpected exception, shown or swallowed.
    assert outcome.status in {"succeeded", "failed", "refused", "denied", "usage", "info",
                              "pending_approval"}
    assert rep.notices or rep.views, f"{text!r} got no answer"
    for notice in rep.notices:
        assert notice.text.strip()
        assert "internal error" not in notice.text
    for record in caplog.records:
        assert record.exc_info is None or record.levelno < logging.ERROR, \
            f"{text!r}: {record.getMessage()}"


@examples(4)
@given(data=st.data())
@pytest.mark.slow
def test_signed_slash_commands_with_any_text_get_no_5xx_and_an_answer(
        bot: SlackDriver, caplog: pytest.LogCaptureFixture, data: st.DataObject) -> None:
    caplog.set_level(logging.INFO)
    caplog.clear()
    sendable_commands = st.tuples(st.sampled_from(VERBS), st.lists(sendable, max_size=5)).map(
        lambda parts: " ".join([parts[0], *parts[1]]))
    sent = data.draw(st.lists(st.one_of(sendable_commands, sendable_commands,
                                        st.lists(sendable, min_size=1, max_size=5).map(" ".join)),
                              min_size=4, max_size=8), label="texts")
    for user, text in zip(["mallory", "alice"] * 4, sent, strict=False):
        response = bot.send_command(user, text)
        assert response.status_code < 500, (text, response.status_code, response.text[:200])
    barrier(bot)  # what they started has most likely answered by now (see barrier)
    said = [call.text for call in bot.slack.calls]
    assert not [text for text in said if "internal error" in text], said
    crashed = [r.getMessage() for r in caplog.records if r.exc_info and r.levelno >= logging.ERROR]
    assert not crashed, (sent, crashed)
