"""The world opsbot runs against in the bench, in its own process so its work does not share
the load generator's interpreter: the simulated cluster (demo world) and the Slack Web API
stand-in of tests/support, plus `GET /bench/calls?since=N` on the stand-in, which lists the
Web API calls it has had (method, channel, ts, headline, time.monotonic() of arrival; monotonic
time is one clock for every process on the machine).

Run: `python -m bench.world INFO_FILE`; writes {"kubeconfig", "slack_api_url", "sim_url",
"calls_url"} to INFO_FILE once up; stops on SIGTERM.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from simcluster import SimCluster
from tests.support.slack_standin import SlackStandIn


def _calls(slack: SlackStandIn) -> Any:
    async def calls(request: Request) -> JSONResponse:
        since = int(request.query_params.get("since", "0"))
        with slack._cond:
            found = slack.calls[since:]
            listed = [{"method": c.method, "channel": c.params.get("channel"),
                       "ts": c.params.get("ts"), "thread_ts": c.params.get("thread_ts"),
                       "headline": c.text.split("\n")[0][:300], "at": c.at,
                       "fault": c.fault} for c in found]
            messages = len(slack.messages)
        return JSONResponse({"next": since + len(listed), "calls": listed,
                             "messages": messages})
    return calls


def main(argv: list[str]) -> int:
    info_file = Path(argv[0])
    workdir = info_file.parent
    slack = SlackStandIn()
    slack.usergroups["S0APPROVERS"] = ["U0BOB", "U0CAROL"]
    slack.app.router.routes.append(Route("/bench/calls", _calls(slack), methods=["GET"]))
    slack.start()
    sim = SimCluster(seed="demo").start(host="127.0.0.1", port=0)
    kubeconfig = sim.write_kubeconfig(str(workdir / "kubeconfig"))
    api_url = slack.api_url
    info = {"kubeconfig": str(kubeconfig), "slack_api_url": api_url,
            "calls_url": api_url.removesuffix("api/") + "bench/calls"}
    tmp = info_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(info))
    tmp.rename(info_file)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    sim.stop()
    slack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
