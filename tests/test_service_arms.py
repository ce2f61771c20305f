"""Arms live, against a real server: shares changed without a restart (reaching every
worker), and a ramp that stops by itself when the new arm loses, or finishes."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx

from training.registry import ModelRegistry

from launcher import ServeProcess
from service_support import ADMIN_KEY, CLIENT_KEY, add_fake_model, write_config

C = {"X-API-Key": CLIENT_KEY}
A = {"X-API-Key": ADMIN_KEY}
ROOT = Path(__file__).resolve().parent.parent
TWO_ARMS = ('[arms]\nsalt = "s"\n[arms.A]\nshare = 1.0\nepsilon = 0.0\n'
            '[arms.B]\nshare = 0.0\nepsilon = 0.0\n')
LOADER = 'model_loader = "service_support:load_model"'


def serve(tmp_path, workers: int = 1, extra: str = "") -> ServeProcess:
    config = write_config(tmp_path, arms=TWO_ARMS, extra=f"{LOADER}\n{extra}")
    models = tmp_path / "models"
    add_fake_model(models, "m-a")
    add_fake_model(models, "m-b", table={"b-event": 9.0})
    reg = ModelRegistry(models)
    reg.promote("m-a", "A", verify=False)
    reg.promote("m-b", "B", verify=False)
    return ServeProcess(config, workers=workers, extra_env={"PYTHONPATH": str(ROOT / "tests")})


def arms_seen(url: str, n: int = 60) -> set[str]:
    seen = set()
    for i in range(n):
        with httpx.Client(base_url=url, timeout=5) as http:  # a new connection: any worker
            seen.add(http.post("/v1/rank", json={"staff_id": f"s-{i}"}, headers=C).json()["arm"])
    return seen


def recommender(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=ROOT, capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT / "tests"), "PATH": "/usr/bin:/bin"})


def test_shares_change_live_on_every_worker(tmp_path):
    server = serve(tmp_path, workers=2)
    try:
        assert arms_seen(server.url) == {"A"}
        with httpx.Client(base_url=server.url, timeout=5) as http:
            r = http.put("/v1/admin/arms", json={"shares": {"A": 0.0, "B": 1.0}}, headers=A)
            assert r.status_code == 200 and r.json()["shares"] == {"A": 0.0, "B": 1.0}
            bad = http.put("/v1/admin/arms", json={"shares": {"A": 0.7, "B": 0.7}}, headers=A)
            assert bad.status_code == 422 and "add up to 1" in bad.json()["message"]
            assert http.put("/v1/admin/arms", json={"shares": {"A": 1.0}}, headers=C).status_code == 403
        time.sleep(1.0)  # the other worker follows within its sync interval (0.05 s here)
        assert arms_seen(server.url) == {"B"}
        out = recommender("arms", "--config", str(tmp_path / "service.toml"), "set", "A=1", "B=0")
        assert out.returncode == 0, out.stderr
        time.sleep(1.0)
        assert arms_seen(server.url) == {"A"}
    finally:
        server.stop()


def test_a_ramp_stops_by_itself_when_the_new_arm_loses(tmp_path):
    """Arm B at 50%: its rankings get no clicks, A's get one each; the always-valid
    interval of B - A falls below zero, and the ramp gives A B's traffic back."""
    server = serve(tmp_path, extra="ramp_check_interval = 0.2\nramp_min_requests = 100")
    config = str(tmp_path / "service.toml")
    try:
        out = recommender("arms", "--config", config, "ramp", "B", "--control", "A", "--steps", "50", "--every", "1h")
        assert out.returncode == 0, out.stderr
        stopped = None
        with httpx.Client(base_url=server.url, timeout=5) as http:
            for i in range(3000):
                r = http.post("/v1/rank", json={"staff_id": f"s-{i}"}, headers=C).json()
                if r["arm"] == "A":
                    ev = {"event_id": f"e-{i}", "request_id": r["request_id"], "banner_id": r["ranking"][0]["banner_id"]}
                    http.post("/v1/events", json={"events": [ev]}, headers=C)
                if i % 100 == 99:
                    ramp = http.get("/v1/admin/arms", headers=A).json()["ramp"]
                    if ramp and ramp["status"] == "stopped":
                        stopped = ramp
                        break
            assert stopped is not None, "the ramp did not stop"
            assert stopped["high"] < 0 and "always-valid" in stopped["reason"]
            time.sleep(0.5)
            assert {http.post("/v1/rank", json={"staff_id": f"t-{i}"}, headers=C).json()["arm"]
                    for i in range(40)} == {"A"}
            assert 'recommender_ramp_difference{bound="high"}' in http.get("/metrics").text
        status = recommender("arms", "--config", config, "status", "--json")
        assert json.loads(status.stdout)["ramp"]["status"] == "stopped"
    finally:
        server.stop()


def test_a_ramp_that_holds_its_last_step_makes_its_model_the_controls(tmp_path):
    """It is done only once it has held its last step for a whole step and its arm has had
    ramp_min_requests requests; the control may get none in a last step of 100%."""
    server = serve(tmp_path, extra="ramp_check_interval = 0.2\nramp_min_requests = 20")
    config = str(tmp_path / "service.toml")
    try:
        assert recommender("arms", "--config", config, "ramp", "B", "--steps", "50,100", "--every", "1s").returncode == 0
        deadline = time.time() + 20
        i = 0
        with httpx.Client(base_url=server.url, timeout=5) as http:
            while time.time() < deadline:
                for _ in range(5):
                    i += 1
                    http.post("/v1/rank", json={"staff_id": f"s-{i}"}, headers=C)
                ramp = http.get("/v1/admin/arms", headers=A).json()
                if ramp["ramp"] and ramp["ramp"]["status"] == "done":
                    break
                time.sleep(0.2)
            assert ramp["ramp"]["status"] == "done", ramp
            time.sleep(0.5)
            final = http.get("/v1/admin/arms", headers=A).json()
            assert final["shares"] == {"A": 1.0, "B": 0.0} and final["models"]["A"] == "m-b"
    finally:
        server.stop()
    assert ModelRegistry(tmp_path / "models").resolve("A") == "m-b"
