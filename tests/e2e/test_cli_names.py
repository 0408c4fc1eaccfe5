"""Names and labels through the real CLI against a real server: a name works wherever
an id does, is unique among the user's jobs that exist, follows a schedule's runs
(NAME#K, and NAME for the latest); labels tag jobs and filter `ps`."""

from __future__ import annotations

import json

import pytest

from tests.e2e.test_cli_daily import Done, ok, remo
from tests.support import wait_until

pytestmark = pytest.mark.root


async def test_a_name_works_wherever_an_id_does(cli_env: dict[str, str]) -> None:
    job_id = (await ok(cli_env, "run", "-d", "--name", "build", "--", "sleep", "30")).stdout
    job_id = job_id.strip()
    status = await ok(cli_env, "status", "build")
    assert f"job          {job_id}" in status.stdout or job_id in status.stdout.split()
    assert "build" in status.stdout
    listed = await ok(cli_env, "ps")
    assert "NAME" in listed.stdout.splitlines()[0] and "build" in listed.stdout
    kill = await ok(cli_env, "kill", "-s", "CONT", "build")
    assert f"to job {job_id}" in kill.stdout
    stopped = json.loads((await ok(cli_env, "stop", "--json", "--grace", "0", "build")).stdout)
    assert (stopped["id"], stopped["name"], stopped["state"]) == (
        job_id,
        "build",
        "JOB_STATE_STOPPED",
    )
    await ok(cli_env, "rm", "build")
    gone = await remo(cli_env, "status", "build")
    assert (gone.code, gone.error) == (5, "remo: no job build")


async def test_a_name_is_unique_among_jobs_that_exist(cli_env: dict[str, str]) -> None:
    await ok(cli_env, "run", "-d", "--name", "once", "--", "true")
    again = await remo(cli_env, "run", "-d", "--name", "once", "--", "true")
    assert again.code == 6 and "the name 'once' is taken" in again.error
    await ok(cli_env, "wait", "once")
    await ok(cli_env, "rm", "once")
    # Once the first is removed, the name is free again, and logs follow it by name.
    await ok(cli_env, "run", "-d", "--name", "once", "--", "echo", "second")
    assert (await ok(cli_env, "logs", "-f", "once")).stdout == "second\n"


async def test_bad_names_and_labels_are_usage_errors(cli_env: dict[str, str]) -> None:
    for args, words in (
        (["--name", "s12"], "invalid name 's12'"),
        (["--name", "9lives"], "invalid name '9lives'"),
        (["--name", "a#1"], "invalid name 'a#1'"),
        (["--label", "nolabel"], "--label 'nolabel': give KEY=VALUE"),
        (["--label", "bad key=1"], "invalid label key 'bad key'"),
    ):
        done: Done = await remo(cli_env, "run", "-d", *args, "--", "true")
        assert done.code == 2 and words in done.error, (args, done)


async def test_labels_tag_jobs_and_filter_ps(cli_env: dict[str, str]) -> None:
    ml = (await ok(cli_env, "run", "-d", "-l", "team=ml", "-l", "gpu=1", "--", "true")).stdout
    web = (await ok(cli_env, "run", "-d", "--label", "team=web", "--", "true")).stdout
    assert (await ok(cli_env, "ps", "-q", "--label", "team=ml")).stdout == ml
    assert (await ok(cli_env, "ps", "-q", "--label", "team=web")).stdout == web
    assert (await ok(cli_env, "ps", "-q", "-l", "team=ml", "-l", "gpu=1")).stdout == ml
    assert (await ok(cli_env, "ps", "-q", "-l", "team=ml", "-l", "gpu=2")).stdout == ""
    (listed,) = json.loads((await ok(cli_env, "ps", "--json", "-l", "gpu=1")).stdout)
    assert listed["labels"] == {"team": "ml", "gpu": "1"}
    assert "labels       gpu=1, team=ml" in (await ok(cli_env, "status", ml.strip())).stdout


async def test_a_schedule_names_its_runs(cli_env: dict[str, str]) -> None:
    schedule = (
        await ok(cli_env, "run", "-d", "--every", "1s", "--name", "tick", "-l", "kind=cron",
                 "--", "echo", "tock")
    ).stdout.strip()  # fmt: skip

    async def ran_twice() -> bool:
        done = await remo(cli_env, "status", "tick#2")
        return done.code == 0

    await wait_until(ran_twice, 30, what="the schedule's second run")
    # While the schedule exists, its name is its latest run, and no job may take it.
    latest = json.loads((await ok(cli_env, "status", "--json", "tick")).stdout)
    assert latest["name"].startswith("tick#") and latest["schedule_id"] == schedule
    taken = await remo(cli_env, "run", "-d", "--name", "tick", "--", "true")
    assert taken.code == 6 and "taken" in taken.error
    await ok(cli_env, "rm", schedule)
    first = json.loads((await ok(cli_env, "status", "--json", "tick#1")).stdout)
    assert (first["name"], first["labels"], first["schedule_id"]) == (
        "tick#1",
        {"kind": "cron"},
        schedule,
    )
    assert (await ok(cli_env, "logs", "tick#1")).stdout == "tock\n"
