"""What people type, through the dispatcher: numbers are ASCII digits only, a flag or parameter
given twice is a usage error, every duration has a limit the error names, and an app deployed
elsewhere is said to be. A usage error runs nothing and audits nothing as a run.

The demo configuration without a cluster: none of these commands may get as far as Kubernetes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import Settings
from bot.services import Services
from tests.conftest import dispatch


async def refused_as_usage(services: Services, text: str, user: str = "alice") -> str:
    """The usage error `text` gets, after checking that nothing ran, was requested or audited."""
    outcome, rep = await dispatch(services, text, user)
    assert outcome.status == "usage", (outcome, rep.notices, rep.views)
    assert outcome.execution_id is None and outcome.request_id is None
    assert rep.views == []
    assert services.store.pending_requests() == []
    assert list(services.store.export_audit()) == []
    [notice] = rep.notices
    assert notice.kind == "error"
    return notice.text


# -- numbers: ASCII digits only ------------------------------------------------------------


@pytest.mark.parametrize(("text", "shown"), [
    ("scale shop-web ٣", "٣"),  # Arabic-Indic three: int() reads it as 3
    ("scale shop-web ５", "５"),  # fullwidth five
    ("scale shop-web ³", "³"),
    ("scale shop-web 1_000", "1_000"),
    ("scale shop-web +3", "+3"),
    ("scale shop-web ' 3 '", " 3 "),
    ("scale shop-web 1e3", "1e3"),
    ("scale shop-web inf", "inf"),
    ("scale shop-web nan", "nan"),
    ("scale shop-web 3.0", "3.0"),
    ("rollback shop-api --to ١", "١"),
    ("rollback shop-api --to=+1", "+1"),
    ("run scale app=shop-web replicas=٣", "٣"),
    ("backup list --limit ٢٠", "٢٠"),
])
async def test_numbers_are_ascii_digits_only(offline: Services, text: str, shown: str) -> None:
    said = await refused_as_usage(offline, text)
    assert said.endswith(f"must be a whole number written with the digits 0-9, not `{shown}`")


async def test_a_number_past_any_limit_is_a_usage_error(offline: Services) -> None:
    said = await refused_as_usage(offline, "rollback shop-api --to " + "9" * 400)
    assert said == "<revision> is too large"


@pytest.mark.parametrize("text", [
    "silence X --for ٣h",
    "automation pause --for ５m",
    "backup create shop-api --ttl ２d --dry-run",
    "backup create shop-api --ttl '1d '",
])
async def test_durations_are_ascii_digits_only(offline: Services, text: str) -> None:
    assert (await refused_as_usage(offline, text)).endswith("is not a duration")


# -- a flag or parameter given twice -------------------------------------------------------


@pytest.mark.parametrize(("text", "said"), [
    ("scale shop-web 3 --env staging --env prod", "`--env` is given twice"),
    ("scale shop-web 3 --env=staging --env prod", "`--env` is given twice"),
    ("status shop-api --reason a --reason b", "`--reason` is given twice"),
    ("status shop-api --dry-run --dry-run", "`--dry-run` is given twice"),
    ("scale shop-web 3 --env prod --emergency a --emergency b", "`--emergency` is given twice"),
    ("rollback shop-api --to 1 --to 2", "`--to` is given twice"),
    ("rollback shop-api --to=1 --to 2", "`--to` is given twice"),
    ("rollback shop-api --to 1 --revision 2", "`--to` and `--revision` both give <revision>"),
    ("rollback shop-api --disable-autosync --disable-autosync", "`--disable-autosync` is given "
                                                                "twice"),
    ("scale shop-web 2 --replicas 3", "`--replicas` and `<replicas>` both give <replicas>"),
    ("scale shop-web 2 --app shop-api", "`--app` and `<app>` both give <app>"),
    ("run scale app=shop-web replicas=2 replicas=9", "`replicas=` is given twice"),
    ("run scale app=shop-web replicas=2 --replicas 9", "`replicas=` and `--replicas` both give "
                                                       "<replicas>"),
    ("run scale shop-web 2 replicas=9", "`replicas=` and `<replicas>` both give <replicas>"),
    ("silence X --labels pod=a pod=b --for 1h", "`--labels` and `label=value words` both give "
                                                "<labels>"),
])
async def test_a_flag_or_parameter_given_twice_is_refused(offline: Services, text: str,
                                                          said: str) -> None:
    assert (await refused_as_usage(offline, text)).startswith(said)


async def test_the_repeated_env_opens_no_approval_request(offline: Services) -> None:
    # The reported case: the last --env used to win, and opened a prod approval request.
    outcome, rep = await dispatch(offline, "scale shop-web 3 --env staging --env prod")
    assert outcome.status == "usage"
    assert rep.notices[0].hint == "usage: scale <app> <replicas>"
    assert offline.store.pending_requests() == []


@pytest.mark.parametrize("text", ["status shop-api --env=", "status shop-api --reason=",
                                  "rollback shop-api --to="])
async def test_an_empty_flag_value_is_refused(offline: Services, text: str) -> None:
    # `--env=` went to the default environment as if no --env had been given.
    flag = text.split()[-1].rstrip("=")
    assert await refused_as_usage(offline, text) == f"{flag} needs a value"


async def test_dry_run_takes_no_value(offline: Services) -> None:
    # `--dry-run=false` used to be a dry run all the same.
    said = await refused_as_usage(offline, "status shop-api --dry-run=false")
    assert said == "`--dry-run` takes no value; give `--dry-run` alone"


# -- durations: a documented maximum, and a minimum where it matters -----------------------


@pytest.mark.parametrize(("text", "said"), [
    # Each of these was an OverflowError ("internal error") in duration parsing.
    ("silence X --for 99999999999d", "<duration> is at most 7d; `99999999999d` is longer"),
    ("automation pause --for 99999999999d", "<duration> is at most 30d; `99999999999d` is "
                                            "longer"),
    ("backup create shop-api --ttl 99999999999999h --dry-run", "<ttl> is at most 3650d; "
                                                               "`99999999999999h` is longer"),
    # Silently accepted, and sent to Velero as 23999999976h.
    ("backup create shop-api --ttl 999999999d --dry-run", "<ttl> is at most 3650d"),
    # A silence outside 1m..7d used to fail as an execution.
    ("silence X --for 8d", "<duration> is at most 7d; `8d` is longer"),
    ("silence X --for 59s", "<duration> is at least 1m; `59s` is shorter"),
    ("automation pause --for 0m", "<duration> is at least 1m; `0m` is shorter"),
    ("automation pause --for 31d", "<duration> is at most 30d"),
    ("backup create shop-api --timeout 0s", "<timeout> is at least 1s"),
    ("run alert-ingress-5xx ingress=web window=0s", "<window> is at least 1s"),
    ("run alert-pvc-filling pvc=data window=99999999999999999999d", "<window> is at most 30d"),
    ("run alert-cpu-throttling app=shop-api window=9999h", "<window> is at most 1d"),
    ("run alert-oom-killed app=shop-api window=9999d", "<window> is at most 7d"),
])
async def test_durations_have_limits_and_say_them(offline: Services, text: str,
                                                  said: str) -> None:
    assert (await refused_as_usage(offline, text, user="bob")).startswith(said)


# -- an app deployed to another environment ------------------------------------------------


@pytest.mark.parametrize("text", [
    "status shop-worker --env prod",
    "diag shop-worker --env prod",
    "run status app=shop-worker --env prod",
    "scale shop-worker 2 --env prod",
])
async def test_an_app_outside_the_environment_says_where_it_is(offline: Services,
                                                               text: str) -> None:
    outcome, rep = await dispatch(offline, text)
    assert outcome.status == "usage"
    [notice] = rep.notices
    assert notice.text == "`shop-worker` is not deployed to prod; it is in staging"
    assert notice.hint == "add `--env staging`"


async def test_a_typo_still_gets_did_you_mean(offline: Services) -> None:
    outcome, rep = await dispatch(offline, "status shop-wroker")
    assert outcome.status == "usage"
    assert "did you mean `shop-worker`" in rep.notices[0].text


# -- buttons repeat commands with single spaces ----------------------------------------------


async def test_run_it_leaves_no_double_space_where_dry_run_was(offline: Services) -> None:
    outcome, rep = await dispatch(offline, "automation pause --dry-run --for 1h --env prod")
    assert outcome.status == "succeeded", rep.final
    [button] = rep.final.buttons
    assert (button.label, button.command) == ("Run it", "automation pause --for 1h --env prod")


async def test_run_it_keeps_a_quoted_reason_whole(offline: Services) -> None:
    outcome, rep = await dispatch(offline, 'automation pause --reason "try --dry-run  first" '
                                           "--dry-run")
    assert outcome.status == "succeeded", rep.final
    assert rep.final.buttons[0].command == "automation pause --reason 'try --dry-run  first'"


FOLLOW_UP = """
name: pause-briefly
description: Pause, offering a resume button whose optional part may render empty.
command: {verb: pause-briefly}
steps: [{name: Status, handler: automation.status}]
follow_up:
  - label: Resume
    command: "automation resume {{ '--reason ' ~ reason if reason else '' }} --env {{ env.name }}"
"""


async def test_a_follow_up_with_an_empty_optional_part_has_single_spaces(
    offline_settings: Settings, tmp_path: Path
) -> None:
    (tmp_path / "pause-briefly.yaml").write_text(FOLLOW_UP)
    settings = offline_settings.model_copy(update={"runbook_dirs": [str(tmp_path)]})
    services = Services.build(settings)
    try:
        outcome, rep = await dispatch(services, "pause-briefly", user="bob")
        assert outcome.status == "succeeded", rep.final
        assert rep.final.buttons[0].command == "automation resume --env staging"
        outcome, rep = await dispatch(services, "pause-briefly --reason drill", user="bob")
        assert rep.final.buttons[0].command == "automation resume --reason drill --env staging"
    finally:
        services.close()
