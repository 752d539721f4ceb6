from __future__ import annotations

import re

import pytest

from bot.commands import parse
from bot.config import Settings
from bot.errors import UnknownName, UsageError
from bot.markup import plain
from bot.registry import Registry
from bot.runbooks.loader import Catalog, load_catalog
from bot.slack.mrkdwn import mrkdwn


@pytest.fixture
def catalog(registry: Registry) -> Catalog:
    return load_catalog([], registry)


def test_positional_arguments_and_common_flags(catalog: Catalog) -> None:
    cmd = parse('scale shop-api 5 --env prod --dry-run --reason "traffic spike"', catalog)
    assert cmd.runbook is not None and cmd.runbook.name == "scale"
    assert cmd.raw_params == {"app": "shop-api", "replicas": "5"}
    assert (cmd.env, cmd.dry_run, cmd.reason) == ("prod", True, "traffic spike")


def test_flag_with_equals(catalog: Catalog) -> None:
    cmd = parse("status shop-api --env=prod", catalog)
    assert cmd.env == "prod"


def test_empty_text_is_help(catalog: Catalog) -> None:
    assert parse("   ", catalog).meta == "help"


def test_help_topic(catalog: Catalog) -> None:
    assert parse("help scale", catalog).topic == "scale"


def test_unknown_verb_suggests_closest(catalog: Catalog) -> None:
    with pytest.raises(UnknownName) as err:
        parse("scael shop-api 3", catalog)
    assert "scale" in err.value.suggestions


def test_unknown_option_suggests(catalog: Catalog) -> None:
    with pytest.raises(UnknownName) as err:
        parse("scale shop-api 3 --dryrun", catalog)
    assert "--dry-run" in err.value.suggestions


def test_too_many_arguments_shows_usage(catalog: Catalog) -> None:
    with pytest.raises(UsageError) as err:
        parse("status shop-api extra", catalog)
    assert err.value.hint == "usage: status <app>"


def test_flag_without_value(catalog: Catalog) -> None:
    with pytest.raises(UsageError, match="--env needs a value"):
        parse("status shop-api --env", catalog)


def test_unbalanced_quote(catalog: Catalog) -> None:
    with pytest.raises(UsageError, match="cannot read"):
        parse('status "shop-api', catalog)


def test_run_by_name_with_keywords(catalog: Catalog) -> None:
    cmd = parse("run scale app=shop-api replicas=4", catalog)
    assert cmd.meta == "run"
    assert cmd.raw_params == {"app": "shop-api", "replicas": "4"}


def test_hostile_text_is_quoted_back_safely(catalog: Catalog) -> None:
    # Quoted as typed, as a value: Slack shows it literally, it cannot ping.
    with pytest.raises(UnknownName) as err:
        parse("<!channel> `rm -rf /`", catalog)
    assert plain(str(err.value)).startswith("unknown command `<!channel>`")
    assert "<!channel>" not in mrkdwn(str(err.value))


def test_unknown_environment_is_quoted_back_safely(offline_settings: Settings) -> None:
    with pytest.raises(UnknownName) as err:
        offline_settings.environment("<!here|here>")
    assert plain(str(err.value)) == "unknown environment `<!here|here>`"
    assert "<!here" not in mrkdwn(str(err.value))


def test_bool_flag_alone_switches_on(catalog: Catalog) -> None:
    cmd = parse("rollback shop-api --disable-autosync", catalog)
    assert cmd.raw_params == {"app": "shop-api", "disable_autosync": "true"}
    cmd = parse("rollback shop-api --disable-autosync --to 2", catalog)
    assert cmd.raw_params == {"app": "shop-api", "disable_autosync": "true", "revision": "2"}
    cmd = parse("rollback shop-api --disable-autosync false", catalog)
    assert cmd.raw_params["disable_autosync"] == "false"


def test_rest_collects_label_words(catalog: Catalog, offline_settings: Settings) -> None:
    from bot.runbooks.params import coerce_params

    cmd = parse("silence KubePodCrashLooping pod=shop-worker-x 'note=two words' url=a=b "
                "--for 1h", catalog)
    assert cmd.runbook is not None and cmd.runbook.name == "silence"
    assert cmd.raw_params == {
        "alertname": "KubePodCrashLooping",
        "labels": "pod=shop-worker-x\nnote=two words\nurl=a=b",
        "duration": "1h",
    }
    values = coerce_params(cmd.runbook, cmd.raw_params, settings=offline_settings,
                           environment="staging")
    assert values["labels"] == {"pod": "shop-worker-x", "note": "two words", "url": "a=b"}
    bare = parse("silence KubePodCrashLooping --for 1h", catalog)
    assert bare.runbook is not None
    assert coerce_params(bare.runbook, bare.raw_params, settings=offline_settings,
                         environment="staging")["labels"] == {}


@pytest.mark.parametrize(("words", "error"), [
    ("=shop-worker-x", "is not label=value"),
    ("bad-label!=x", "is not label=value"),
    ("pod=a pod=b", "label `pod` is given twice"),
])
def test_rest_refuses_bad_label_words(
    catalog: Catalog, offline_settings: Settings, words: str, error: str
) -> None:
    from bot.runbooks.params import coerce_params

    cmd = parse(f"silence KubePodCrashLooping {words} --for 1h", catalog)
    assert cmd.runbook is not None
    with pytest.raises(UsageError) as err:
        coerce_params(cmd.runbook, cmd.raw_params, settings=offline_settings,
                      environment="staging")
    assert re.search(error, plain(str(err.value)))


def test_rest_is_only_for_runbooks_that_declare_it(catalog: Catalog) -> None:
    with pytest.raises(UsageError, match="too many arguments"):
        parse("status shop-api pod=x", catalog)
