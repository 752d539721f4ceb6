"""Label matchers (Alertmanager semantics) and routing from an alert to runbooks, with the
target derived from labels and validated before use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from bot.alerts.matchers import MatcherError, parse_matcher
from bot.alerts.payload import AlertItem
from bot.alerts.routing import alert_context, route
from bot.config import Settings, load_settings
from bot.markup import plain
from bot.runbooks.loader import Catalog, LoadedRunbook
from bot.runbooks.models import Runbook
from tests.support.alert_payloads import alert

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "examples" / "demo.yaml"


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings(DEMO_CONFIG, environ={})


def runbook(matchers: list[str], **extra: Any) -> Runbook:
    return Runbook.model_validate({
        "name": extra.pop("name", "rb"), "description": "test",
        "parameters": {"app": {"type": "app"}},
        "steps": [{"name": "Diagnose", "handler": "k8s.diag"}],
        "alerts": [{"matchers": matchers, "params": {"app": "{{ alert.app }}"}, **extra}],
    })


def item(labels: dict[str, str], **kwargs: Any) -> AlertItem:
    return AlertItem.model_validate(alert(labels, **kwargs))


@pytest.mark.parametrize("text, labels, expected", [
    ('alertname="X"', {"alertname": "X"}, True),
    ('alertname="X"', {"alertname": "XY"}, False),
    ("alertname=X", {"alertname": "X"}, True),  # unquoted simple values
    ('severity=~"warning|critical"', {"severity": "critical"}, True),
    ('severity=~"warning|critical"', {"severity": "critical-ish"}, False),  # anchored
    ('severity=~"warn"', {"severity": "warning"}, False),  # anchored at the end too
    ('severity!~"info|none"', {"severity": "warning"}, True),
    ('severity!~"info|none"', {"severity": "info"}, False),
    ('namespace!=""', {}, False),  # a missing label is the empty string
    ('namespace=""', {}, True),
    ('team!="db"', {}, True),
    ('team=~".*"', {}, True),
    ('team=~".+"', {}, False),
    (r'summary="say \"hi\"\n"', {"summary": 'say "hi"\n'}, True),  # escapes
    ('a =~ "x.*"', {"a": "xyz"}, True),  # spaces around the operator
    ('pod=~"shop-.*"', {"pod": "shop-api-1\nother"}, True),  # DOTALL: . spans newlines
])
def test_matchers(text: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_matcher(text).matches(labels) is expected


@pytest.mark.parametrize("text", [
    "", "alertname", '="X"', '1abc="x"', 'a=~"("', 'a="unbalanced', 'a="x"y"',
    'a="' + "x" * 1001 + '"',
])
def test_bad_matchers_are_refused(text: str) -> None:
    with pytest.raises(MatcherError):
        parse_matcher(text)


def test_a_runbook_with_a_bad_matcher_does_not_load() -> None:
    with pytest.raises(ValidationError, match="not a regular expression"):
        runbook(['alertname=~"("'])
    with pytest.raises(ValidationError, match="not a duration"):
        runbook(['alertname="X"'], cooldown="soon")


def test_matched_runbooks_get_the_target_from_labels(settings: Settings) -> None:
    catalog = Catalog([
        LoadedRunbook(runbook(['alertname="KubePodCrashLooping"'], name="a"), "a.yaml"),
        LoadedRunbook(runbook(['alertname="KubePodCrashLooping"', 'severity="critical"'],
                              name="b"), "b.yaml"),
        LoadedRunbook(runbook(['alertname!="KubePodCrashLooping"'], name="c"), "c.yaml"),
    ])
    found = route(item({"alertname": "KubePodCrashLooping", "severity": "warning",
                        "namespace": "shop-prod", "pod": "shop-api-7c9d8f6b5-abcde"}),
                  catalog, settings)
    assert [(r.runbook.name, r.environment.name if r.environment else None, r.target,
             r.params, r.problem) for r in found] == [
        ("a", "prod", "shop-api", {"app": "shop-api"}, None)]


@pytest.mark.parametrize("labels, app", [
    ({"deployment": "shop-web"}, "shop-web"),
    ({"pod": "shop-web-7c9d8f6b5-abcde"}, "shop-web"),
    ({"pod": "shop-web-abcde"}, None),  # not how a Deployment names its pods
    ({"pod": "shop-web-7c9d8f6b5-abcde-extra"}, None),
    ({"horizontalpodautoscaler": "shop-api"}, "shop-api"),
    ({"app_kubernetes_io_name": "shop-api"}, "shop-api"),
    ({"deployment": "shop-worker"}, "shop-worker"),
    ({"deployment": "payments"}, None),
    ({"deployment": "SHOP-API"}, None),
])
def test_the_app_is_a_configured_one(settings: Settings, labels: dict[str, str],
                                     app: str | None) -> None:
    context = alert_context(item({"alertname": "X", "namespace": "shop-staging", **labels}),
                            settings)
    assert context["app"] == app and context["env"] == "staging"


def test_shop_worker_is_not_an_app_in_prod(settings: Settings) -> None:
    context = alert_context(item({"alertname": "X", "namespace": "shop-prod",
                                  "deployment": "shop-worker"}), settings)
    assert (context["env"], context["app"]) == ("prod", None)


def test_the_route_says_where_an_app_of_another_environment_is(settings: Settings) -> None:
    catalog = Catalog([LoadedRunbook(runbook(['alertname="X"']), "rb.yaml")])
    for labels in ({"deployment": "shop-worker"}, {"pod": "shop-worker-7c9d8f6b5-abcde"}):
        [found] = route(item({"alertname": "X", "namespace": "shop-prod", **labels}), catalog,
                        settings)
        assert found.params is None and plain(found.problem or "") == (
            "no valid target from the alert's labels: `shop-worker` is not deployed to prod; "
            "it is in staging")
    [unknown] = route(item({"alertname": "X", "namespace": "shop-prod", "deployment": "pay"}),
                      catalog, settings)
    assert unknown.problem == "no valid target from the alert's labels: missing <app>"


def test_numbers_from_labels_are_ascii_digits(settings: Settings) -> None:
    counted = Runbook.model_validate({
        "name": "rb", "description": "test", "parameters": {"count": {"type": "int"}},
        "steps": [{"name": "Status", "handler": "automation.status"}],
        "alerts": [{"matchers": ['alertname="X"'],
                    "params": {"count": "{{ alert.labels.count }}"}}],
    })
    catalog = Catalog([LoadedRunbook(counted, "rb.yaml")])
    for count, params, problem in (("3", {"count": 3}, None), ("٣", None, (
            "no valid target from the alert's labels: <count> must be a whole number written "
            "with the digits 0-9, not `٣`"))):
        [found] = route(item({"alertname": "X", "namespace": "shop-staging", "count": count}),
                        catalog, settings)
        assert (found.params, found.problem and plain(found.problem)) == (params, problem)


@pytest.mark.parametrize("labels", [
    {"namespace": "shop-staging\n"},
    {"namespace": "Shop-Staging"},
    {"namespace": "shop-staging", "pod": "shop-api-7c9d8f6b5-abcde\n"},
    {"namespace": "shop-staging", "deployment": "shop-api\n"},
    {"namespace": "shop-staging", "deployment": "shop-api;rm"},
    {"namespace": "shop-staging", "deployment": "{{ 7*7 }}"},
    {"namespace": "x" * 64},
])
def test_hostile_labels_give_no_target(settings: Settings, labels: dict[str, str]) -> None:
    catalog = Catalog([LoadedRunbook(runbook(['alertname="X"']), "rb.yaml")])
    [found] = route(item({"alertname": "X", **labels}), catalog, settings)
    assert found.params is None and found.problem and found.target is None


def test_label_values_are_never_template_source(settings: Settings) -> None:
    rb = Runbook.model_validate({
        "name": "echo", "description": "test",
        "parameters": {"note": {"type": "string"}},
        "steps": [{"name": "Diagnose", "handler": "k8s.diag"}],
        "alerts": [{"matchers": ['alertname="X"'],
                    "params": {"note": "{{ alert.labels.note }} / {{ alert.summary }}"}}],
    })
    hostile = item({"alertname": "X", "namespace": "shop-staging",
                    "note": "{{ 7*7 }}{% raw %}"},
                   annotations={"summary": "{{ ''.__class__.__mro__ }}"})
    [found] = route(hostile, Catalog([LoadedRunbook(rb, "echo.yaml")]), settings)
    assert found.params == {"note": "{{ 7*7 }}{% raw %} / {{ ''.__class__.__mro__ }}"}


def test_links_are_http_only_and_grafana_values_are_quoted(settings: Settings) -> None:
    custom = settings.model_copy(update={"alerts": settings.alerts.model_copy(update={
        "grafana_url": "https://grafana.example/d/pods?var-ns={namespace}&var-pod={pod}"})})
    context = alert_context(item(
        {"alertname": "X", "namespace": "shop-staging", "pod": "a&b=c"},
        annotations={"runbook_url": "javascript:alert(1)"}), custom)
    assert context["links"]["runbook"] is None
    assert context["links"]["prometheus"].startswith("http://")
    assert context["links"]["grafana"] == (
        "https://grafana.example/d/pods?var-ns=shop-staging&var-pod=a%26b%3Dc")


def test_the_loader_checks_alert_params(tmp_path: Path) -> None:
    from bot.registry import Registry
    from bot.runbooks.loader import load_file

    registry = Registry().load(["handlers.diagnostics"])
    path = tmp_path / "rb.yaml"
    data = {"name": "rb", "description": "x", "parameters": {"app": {"type": "app"}},
            "steps": [{"name": "D", "handler": "k8s.diag"}],
            "alerts": [{"matchers": ['alertname="X"'], "params": {"nope": "{{ alert.app }}"},
                        "suggest": [{"label": "x", "command": "{{ broken"}]}]}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    loaded, problems = load_file(path, registry)
    assert loaded is None
    text = "\n".join(problems)
    assert "`nope` is not a parameter" in text
    assert "required parameter `app` gets no value" in text
    assert "template error" in text
    assert all(p.startswith(f"{path}:") for p in problems)


@pytest.mark.parametrize("labels, subject", [
    ({"deployment": "shop-api"}, "shop-api"),
    ({"persistentvolumeclaim": "data-db-0"}, "persistentvolumeclaim/data-db-0"),
    ({"job_name": "nightly-report-29"}, "job_name/nightly-report-29"),
    ({"instance": "10.0.0.7:9100"}, "instance/10.0.0.7:9100"),
    ({"persistentvolumeclaim": "bad value; rm"}, None),  # falls back to the fingerprint
])
def test_guardrails_count_per_app_or_per_object(settings: Settings, labels: dict[str, str],
                                                subject: str | None) -> None:
    catalog = Catalog([LoadedRunbook(runbook(['alertname="X"']), "rb.yaml")])
    alert_item = item({"alertname": "X", "namespace": "shop-staging", **labels})
    [found] = route(alert_item, catalog, settings)
    expected = subject or f"alert/{alert_item.fingerprint[:32]}"
    assert found.subject == expected
