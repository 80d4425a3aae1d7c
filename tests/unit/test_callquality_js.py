"""The pages' call-quality module (static/js/callquality.js) run by Node on stats reports
shaped as Chromium's getStats() gives them: the path is `relay` when either end of the
selected candidate pair is a TURN relay, and a leg's summary has the median round trip,
the loss over the leg (lost of expected), the mean bitrate and the freezes."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

STATIC = Path(__file__).resolve().parents[2] / "telemed" / "web" / "static"
MODULE = STATIC / "js" / "callquality.js"

SCRIPT = """
const q = await import(process.argv[1]);
const report = (pairs, local, remote) => new Map([
  ["T1", {type: "transport", selectedCandidatePairId: "P1"}],
  ["P1", {type: "candidate-pair", localCandidateId: "L", remoteCandidateId: "R",
          currentRoundTripTime: 0.042, nominated: true, state: "succeeded"}],
  ["L", {type: "local-candidate", candidateType: local,
         relayProtocol: local === "relay" ? "tcp" : undefined}],
  ["R", {type: "remote-candidate", candidateType: remote}],
]);
const log = new q.QualityLog();
for (const [rtt, received, lost, kbps, path] of [
  [40, 95, 5, 1000, "relay"], [50, 90, 10, 1200, "relay"], [60, 100, 0, 1400, "direct"],
]) log.add({path, rttMs: rtt, received, lost, lossPercent: 100 * lost / (received + lost),
            bitrateKbps: kbps, freezes: 1});
console.log(JSON.stringify({
  hostRelay: q.selectedPath(report(1, "host", "relay")),
  relayHost: q.selectedPath(report(1, "relay", "host")),
  hostHost: q.selectedPath(report(1, "host", "srflx")),
  none: q.selectedPath(new Map()),
  summary: log.summary(),
  levels: [q.level({rttMs: 100, lossPercent: 0}), q.level({rttMs: 250, lossPercent: 0}),
           q.level({rttMs: 50, lossPercent: 6})],
}));
"""


def run() -> dict[str, object]:
    node = shutil.which("node")
    assert node, "this test needs Node.js (as the iCalendar client tests do)"
    done = subprocess.run(
        [node, "--input-type=module", "-e", SCRIPT, MODULE.as_uri()],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return dict(json.loads(done.stdout))


def test_the_path_is_relay_when_either_end_of_the_selected_pair_is_relayed() -> None:
    seen = run()
    assert seen["hostRelay"] == {
        "path": "relay",
        "local": "host",
        "remote": "relay",
        "relayProtocol": None,
        "rttMs": 42,
    }
    assert seen["relayHost"]["path"] == "relay"  # type: ignore[index]
    assert seen["relayHost"]["relayProtocol"] == "tcp"  # type: ignore[index]
    assert seen["hostHost"]["path"] == "direct"  # type: ignore[index]
    assert seen["none"] is None


def test_a_legs_summary_has_the_median_round_trip_and_the_loss_over_the_leg() -> None:
    seen = run()
    assert seen["summary"] == {
        "path": "relay",  # seen most
        "median_rtt_ms": 50,
        "loss_percent": 5.0,  # 15 lost of 300 expected
        "bitrate_kbps": 1200,
        "freezes": 1,
        "seconds": 3,
    }
    assert seen["levels"] == ["good", "fair", "poor"]
