"""Runbook steps are Jinja templates in a sandbox; what people type and what alerts carry is
data put into them, never template source. Command arguments and alert labels holding `{{ }}`
or `{% %}` come out as typed; a runbook author's template cannot walk to Python internals
(`__class__`, `__globals__`, `__subclasses__`, format-string tricks): rendering fails with our
error instead."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.errors import PermanentError
from bot.runbooks.templating import evaluate, render_value
from bot.services import Services
from bot.slack.app import build_services
from bot.slack.server import create_app
from simcluster import SimCluster
from tests.alerts.conftest import TOKEN, alert_settings_for
from tests.hostile.conftest import examples
from tests.support.alert_payloads import alert, notification, to_bytes
from tests.support.signing import SIGNING_SECRET
from tests.support.slack_standin import (
    BOT_TOKEN,
    ServerThread,
    SlackDriver,
    SlackStandIn,
)

# Rendered, each of these would print EVALUATED; as data, they never do.
EVALUATED = "zqxj"
INJECTIONS = [
    '{{ "zq" ~ "xj" }}',
    '{% set a = "zq" ~ "xj" %}{{ a }}',
    '{{ "zq" if true }}{{ "xj" }}',
    '{% for x in ["zq"] %}{{ x }}xj{% endfor %}',
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.popen('echo zqxj').read() }}",
    "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "{{ self._TemplateReference__context }}",
    "{{ config.items() }}",
    "{% raw %}{{ x }}{% endraw %}",
    "{{",
    "{% if %}",
    "}}{{",
]
user_text = st.one_of(
    st.sampled_from(INJECTIONS),
    st.text(max_size=60),
    st.lists(st.sampled_from(["{{", "}}", "{%", "%}", "{#", "#}", "x", " ", "'", '"', "|",
                              "__class__", ".", "(", ")"]), max_size=12).map("".join),
)

# How runbook authors put values into step arguments.
FORMS = [
    ("{{ params.x }}", "{}"),
    ("before {{ params.x }} after", "before {} after"),
    ("{{ params.x | default('') }}", "{}"),
    ("{{ alert.labels.get('x') }}", "{}"),
    ("{{ alert.labels.x }}", "{}"),
    ("{% if params.x %}{{ params.x }}{% endif %}", "{}"),
]


@examples(300)
@given(value=user_text, form=st.sampled_from(FORMS))
def test_user_values_come_out_as_typed(value: str, form: tuple[str, str]) -> None:
    template, expected = form
    context = {"params": {"x": value}, "alert": {"labels": {"x": value}}}
    if "{% if" in template and not value:
        assert render_value(template, context) == ""
        return
    assert render_value(template, context) == expected.format(value)
    assert render_value({"a": [template]}, context) == {"a": [expected.format(value)]}


# What an author's template might try, from any object it can name.
STARTS = ["params", "alert", "alert.labels", "env", "''", "()", "[]", "{}", "1", "cycler",
          "joiner", "lipsum", "namespace", "range", "dict", "self", "params.x", "loop", "x"]
PRIVATE = ["__class__", "__mro__", "__base__", "__bases__", "__subclasses__", "__init__",
           "__globals__", "__builtins__", "__dict__", "__code__", "__func__", "__self__",
           "__module__", "__getattribute__", "__reduce__", "__reduce_ex__", "__import__",
           "_TemplateReference__context", "_Cycler__items", "__spec__", "__loader__"]


@st.composite
def walks(draw: st.DrawFn) -> str:
    start = draw(st.sampled_from(STARTS))
    steps = []
    for name in draw(st.lists(st.sampled_from(PRIVATE), min_size=1, max_size=4)):
        form = draw(st.sampled_from([".{}", "['{}']", "|attr('{}')", ".{}()"]))
        steps.append(form.format(name))
    return start + "".join(steps)


@examples(300)
@given(walk=walks(), wrap=st.sampled_from(["{{{{ {} }}}}", "x{{{{ {} }}}}",
                                            "{{% set y = {} %}}{{{{ y }}}}"]))
def test_no_template_reaches_python_internals(walk: str, wrap: str) -> None:
    context = {"params": {"x": "v"}, "alert": {"labels": {"x": "v"}}, "env": {"name": "s"}}
    with pytest.raises(PermanentError):
        render_value(wrap.format(walk), context)
    with pytest.raises(PermanentError):
        evaluate(walk, context)


@pytest.mark.parametrize("template", [
    "{{ '{0.__class__.__mro__}'.format(params) }}",
    "{{ '%s'|format(params.__class__) }}",
    "{{ params.x.format_map(params) }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os }}",
    "{{ params.update({'x': 1}) }}",  # the context is immutable too
    "{{ params.__setitem__('x', 1) }}",
    "{{ dict['__class__'] }}",  # a type subscripted is a generic alias in Python: not here
    "{{ params.n / params.zero }}",  # Python's own errors are the template failing, too
    "{{ params.items[5] }}",
    "{% if params.n > 'a' %}x{% endif %}",
])
def test_known_escapes_fail_with_our_error(template: str) -> None:
    params: dict[str, Any] = {"x": "{0.__class__}", "n": 1, "zero": 0, "items": [1]}
    with pytest.raises(PermanentError):
        render_value(template, {"params": params})
    assert params == {"x": "{0.__class__}", "n": 1, "zero": 0, "items": [1]}


# -- through the real server: slash commands and alert labels --------------------------------


@pytest.fixture
def alert_server(sim: SimCluster, tmp_path: Path, slack: SlackStandIn
                 ) -> Iterator[tuple[SlackDriver, Services]]:
    settings = alert_settings_for(sim, tmp_path, environ={
        "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.api_url})
    built = build_services(settings)
    running = ServerThread(create_app(built, shutdown_grace=10)).start()
    with httpx.Client(timeout=30.0) as http:
        yield SlackDriver(running.url, http, slack, SIGNING_SECRET), built
    running.stop()
    built.close()


def everything_said(slack: SlackStandIn, services: Services,
                    caplog: pytest.LogCaptureFixture) -> str:
    """Every message posted to Slack, every audit record and every log line, as one text."""
    said = [json.dumps(call.params) for call in slack.calls]
    audit = [json.dumps(record, default=str) for record in services.store.export_audit()]
    logged = [record.getMessage() for record in caplog.records]
    return "\n".join(said + audit + logged)


@pytest.mark.slow
def test_template_text_in_commands_and_alert_labels_is_never_evaluated(
        alert_server: tuple[SlackDriver, Services], slack: SlackStandIn,
        caplog: pytest.LogCaptureFixture) -> None:
    bot, services = alert_server
    caplog.set_level(logging.DEBUG)
    injection = INJECTIONS[0]
    quoted = injection.replace('"', '\\"')
    for text in (f'scale shop-web 2 --reason "{quoted}"',
                 f'silence "{quoted}" --for 1h --reason "{quoted}" --dry-run',
                 f'run scale app=shop-web replicas=2 --reason "{quoted}"',
                 f'status "{quoted}"', f'logs shop-web --grep "{quoted}"'):
        assert bot.send_command("alice", text).status_code == 200
    bot.send_command("alice", "status shop-web")
    bot.finished("status shop-web")
    labels: dict[str, Any] = {"alertname": "TestCrashLoop", "severity": "warning",
                              "namespace": "shop-staging", "pod": "shop-worker-5d8f7c9b6-x2x4q"}
    hostile = {**labels, "container": injection, "reason": INJECTIONS[1]}
    response = bot.http.post(
        f"{bot.url}/alertmanager", headers={"authorization": f"Bearer {TOKEN}"},
        content=to_bytes(notification([alert(hostile, annotations={"summary": INJECTIONS[2]})])))
    assert response.status_code == 200
    shown = slack.wait_message(lambda m: m.channel == "C0ALERTS" and "ran," in json.dumps(m.blocks))
    assert "TestCrashLoop" in shown.text
    text = everything_said(slack, services, caplog)
    assert "zq" in text  # the injections were shown, quoted as typed...
    assert EVALUATED not in text  # ...and never evaluated
