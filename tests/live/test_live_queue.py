"""TinyBreaker through a queue tool on a real running WebUI: the agent-scheduler extension
(ArtVentureX/sd-webui-agent-scheduler) stores a queued request (the script arguments pickled into its SQLite
database) and replays it later through the host's own txt2img API (see docs/hosts.md, "Queues and workers").

Skipped unless TINYBREAKER_LIVE_URL is set and the host answers agent-scheduler's queue route:
    TINYBREAKER_LIVE_URL=http://127.0.0.1:7860 python -m pytest tests/live/test_live_queue.py
"""

from __future__ import annotations

import time

import pytest

from test_live_webui import BASE_URL, SIZE, STEPS, call, decode_image, txt2img

QUEUE_TIMEOUT = 240  # seconds for one small task on a CPU host (each one takes seconds on an idle machine)
FINISHED = ("done", "failed", "interrupted")

pytestmark = [pytest.mark.live, pytest.mark.skipif(not BASE_URL, reason="TINYBREAKER_LIVE_URL not set")]


@pytest.fixture(scope="module", autouse=True)
def agent_scheduler():
    status, answer = call("GET", "/agent-scheduler/v1/queue?limit=1")
    if status != 200 or "pending_tasks" not in answer:
        pytest.skip(f"the host does not serve agent-scheduler's API (GET /agent-scheduler/v1/queue: {status})")
    status, _ = call("POST", "/agent-scheduler/v1/queue/resume")
    assert status == 200


def script_name() -> str:
    """The name the host lists us under, as a caller would find it."""
    status, scripts = call("GET", "/sdapi/v1/scripts")
    assert status == 200, scripts
    return next(name for name in scripts["txt2img"] if name.lower() == "tinybreaker")


def queue_txt2img(tinybreaker_args, **overrides) -> str:
    body = {"prompt": "a red cube on a table", "negative_prompt": "blurry", "steps": STEPS, "width": SIZE,
            "height": SIZE, "seed": 7, "sampler_name": "Euler", "cfg_scale": 5,
            "alwayson_scripts": {script_name(): {"args": tinybreaker_args}}}
    body.update(overrides)
    status, answer = call("POST", "/agent-scheduler/v1/queue/txt2img", body)
    assert status == 200 and answer.get("task_id"), (status, answer)
    return answer["task_id"]


def wait_for(task_id: str) -> dict:
    """The task's record once it finished. QUEUE_TIMEOUT counts from when it starts running: tasks queued before
    it (a task left over from an earlier run is replayed when the host starts) may run first."""
    deadline = time.monotonic() + 3 * QUEUE_TIMEOUT
    started = False
    idle_polls = 0
    while time.monotonic() < deadline:
        status, answer = call("GET", f"/agent-scheduler/v1/task/{task_id}")
        assert status == 200 and answer.get("success"), (status, answer)
        if answer["data"]["status"] in FINISHED:
            return answer["data"]
        if answer["data"]["status"] == "running" and not started:
            started, deadline = True, min(deadline, time.monotonic() + QUEUE_TIMEOUT)
        # agent-scheduler's runner thread lingers about a second after its queue runs empty, and a task queued (or a
        # resume) in that second is left pending until the next queue call: nudge it as that next call would.
        status, queue = call("GET", "/agent-scheduler/v1/queue?limit=1")
        idle_polls = idle_polls + 1 if status == 200 and queue.get("current_task_id") is None else 0
        if idle_polls >= 3:
            call("POST", "/agent-scheduler/v1/queue/resume")
            idle_polls = 0
        time.sleep(1)
    pytest.fail(f"task {task_id} not finished in time (running: {started}; {QUEUE_TIMEOUT} s once running)")


def results_of(task_id: str) -> list[dict]:
    status, answer = call("GET", f"/agent-scheduler/v1/task/{task_id}/results")
    assert status == 200 and answer.get("success"), (status, answer)
    return answer["data"]


def test_a_queued_tinybreaker_task_makes_a_tinybreaker_image():
    # an inline --seed is resolved when the task is replayed, like any other request
    task_id = queue_txt2img([{"enabled": True}], prompt="a red cube on a table --seed 11")
    task = wait_for(task_id)
    assert task["status"] == "done", task
    [result] = results_of(task_id)
    assert decode_image(result["image"]).size == (SIZE, SIZE)
    info = result["infotext"]
    assert "TinyBreaker: on" in info and "TinyBreaker base steps:" in info, info
    assert "Seed: 11," in info and "--seed" not in info, info


def test_a_task_tinybreaker_refuses_fails_clearly_and_the_queue_goes_on():
    status, _ = call("POST", "/agent-scheduler/v1/queue/pause")
    assert status == 200
    try:  # both wait in the queue, then run one after the other
        bad = queue_txt2img([{"enabled": True, "checkpoint": "missing.safetensors"}])
        good = queue_txt2img([True, "", "", "PHOTO"], seed=3)  # a positional list as stored by an older version
    finally:
        status, _ = call("POST", "/agent-scheduler/v1/queue/resume")
        assert status == 200
    failed = wait_for(bad)
    assert failed["status"] == "failed", failed
    assert "422" in failed["result"] and "checkpoint" in failed["result"], failed["result"]
    assert "Traceback" not in failed["result"]
    status, queue = call("GET", "/agent-scheduler/v1/queue?limit=1")
    assert status == 200, queue
    if (queue.get("current_task_id") or "").startswith("task(txt2img-"):
        # A1111 1.10.1's txt2img API marks its job finished only when it succeeds (finish_task is not in a finally),
        # so after ANY failed task agent-scheduler waits for that stale job; the next generation of any kind clears
        # it. Ours is such a generation, as a user's next request would be (docs/hosts.md, "Queues and workers").
        status, result = txt2img([{"enabled": True}])
        assert status == 200, result
    done = wait_for(good)
    assert done["status"] == "done", done
    [result] = results_of(good)
    assert "TinyBreaker: on" in result["infotext"] and "TB style: PHOTO" in result["infotext"], result["infotext"]
