#!/usr/bin/env python3
"""Write docs/rules.md: every rule of the service with its id, in this project's words, and
the tests that cite the id (found by reading the test files). `--check` exits 1 when the
committed doc differs from what would be written (tests/unit/test_rules_doc.py runs it).

    python3 scripts/rules_doc.py            # rewrite docs/rules.md
    python3 scripts/rules_doc.py --check
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "rules.md"

# (id, what the service does), grouped as the rules are.
RULES: list[tuple[str, list[tuple[str, str]]]] = [
    (
        "People and access",
        [
            (
                "R-ID-1",
                "Patients are the insured persons of the insurer's list (policy number, "
                "purchase date, validity, full name, birth date, sex, mobile phone), imported in "
                "bulk; the phone is the login.",
            ),
            (
                "R-AUTH-1",
                "A patient logs in with their phone and a one-time code sent by SMS to "
                "the phone of their policy.",
            ),
            (
                "R-AUTH-2",
                "A consultant can help: they identify the caller by policy number, name, "
                "birth date and phone, and the same SMS code is sent.",
            ),
            (
                "R-AUTH-3",
                "A caller missing from the list is identified and registered by the consultant.",
            ),
            (
                "R-CONSENT-1",
                "No service before the patient accepts the personal-data consent; a "
                "withdrawal stops every service again.",
            ),
        ],
    ),
    (
        "Urgent consultation",
        [
            (
                "R-URG",
                "The urgent path as a whole: consultant first, duty doctor, back to the "
                "consultant.",
            ),
            (
                "R-URG-1",
                "The patient chooses video, audio or chat and joins the consultants' queue.",
            ),
            (
                "R-URG-2",
                "The consultation starts within 5 minutes (`rules.urgent_start_target`): "
                "waits past it are marked and counted.",
            ),
            (
                "R-URG-3",
                "The consultant transfers the patient to the duty doctor when an urgent "
                "consultation is needed.",
            ),
            ("R-URG-4", "The duty doctor consults (see R-LIMIT-URG for how long)."),
            ("R-URG-5", "After the doctor the patient goes back to the consultant."),
            (
                "R-ROUTE-1",
                "The duty doctor is a therapist from 18, a paediatrician from 1 to 17 "
                "(age on the day); younger patients are not transferred, with a reason.",
            ),
            ("R-LIMIT-URG", "A duty doctor's leg lasts at most 30 minutes (`rules.urgent_limit`)."),
        ],
    ),
    (
        "Consultation by appointment",
        [
            (
                "R-SCH",
                "Booking: the consultant books any doctor at an agreed time and says how the "
                "patient is told (R-SCH-1); patients book psychologists and specialists from free "
                "slots (R-SCH-2); at the time the patient waits for the consultant, who transfers "
                "them (R-SCH-3).",
            ),
            (
                "R-REMIND-1",
                "A reminder reaches the patient 10 minutes ahead (`rules.remind_before`).",
            ),
            (
                "R-LIMIT-SCH",
                "A booked doctor's leg lasts at most 15 minutes (`rules.scheduled_limit`).",
            ),
            (
                "R-NOSHOW-1",
                "A patient who cannot be reached for 15 minutes "
                "(`rules.no_show_after`) has the consultation closed as a no-show.",
            ),
            ("R-CANCEL-1", "A patient may cancel until the consultation starts, not after."),
            (
                "R-DOCS-1",
                "A consultation that needs medical documents starts only once the "
                "patient has put them in their medical card.",
            ),
            (
                "R-FALLBACK-1",
                "When the platform cannot be used, the app shows the insurer's "
                "hotline (`clinic.hotline`).",
            ),
        ],
    ),
    (
        "Second opinion, conclusions and calendar",
        [
            (
                "R-SECOND",
                "A second expert opinion on the patient's documents is concluded within "
                "14 working days (`rules.second_opinion_working_days`) and delivered in the chat.",
            ),
            (
                "R-CONCL-1",
                "The doctor writes and signs a conclusion with recommendations; the "
                "patient sees it in the calendar as soon as it is signed.",
            ),
            ("R-CAL-1", "Calendar times are shown in the time zone the patient sets."),
        ],
    ),
    (
        "Devices",
        [
            (
                "R-DEV",
                "The connection check: camera of at least 1024x720 for video, a microphone, "
                "a supported system and browser, at least 1 Mbit/s, and a real test call; each "
                "requirement says what passed, what failed and what to do.",
            ),
        ],
    ),
]


def citations(known: set[str]) -> dict[str, list[str]]:
    """Rule id -> the tests (file::function) that cite it in their docstring or body, or
    (known ids only, as `r_route_1`) in their name."""
    cited: dict[str, list[str]] = {}
    pattern = re.compile(r"(?<![A-Za-z0-9])R-[A-Z]+(?:-[A-Z0-9]+)?")
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        source = path.read_text()
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            if not node.name.startswith("test_"):
                continue
            name = "-" + node.name.upper().replace("_", "-") + "-"
            found = {rule for rule in known if f"-{rule}-" in name}
            found |= set(pattern.findall(ast.get_source_segment(source, node) or ""))
            for rule in found:
                cited.setdefault(rule, []).append(f"{path.relative_to(ROOT)}::{node.name}")
    return cited


def render() -> str:
    out = [
        "# Rules",
        "",
        "What the service must do, each rule with the id that code, docs and tests cite, and",
        "the tests that cite it (in their name, docstring or body). Every number is a default",
        "from `config.yaml`. Written by `scripts/rules_doc.py` (run it after adding a test",
        "that cites a rule; a unit test fails while this file is out of date).",
        "",
    ]
    known = {rule for _, rules in RULES for rule, _ in rules}
    cited = citations(known)
    for group, rules in RULES:
        out += [f"## {group}", ""]
        for rule, text in rules:
            tests = sorted(set(cited.get(rule, [])))
            out += [f"### {rule}", "", text, ""]
            out += [f"- `{t}`" for t in tests] or ["- (no test cites this id yet)"]
            out.append("")
    stray = sorted(set(cited) - known)
    if stray:
        out += ["## Ids cited by tests that are not rules", ""]
        for rule in stray:
            out += [f"- {rule}: " + ", ".join(f"`{t}`" for t in sorted(set(cited[rule])))]
        out.append("")
    return "\n".join(out)


def main() -> None:
    text = render()
    if sys.argv[1:] == ["--check"]:
        if not DOC.is_file() or DOC.read_text() != text:
            sys.exit("docs/rules.md is out of date: run python3 scripts/rules_doc.py")
        return
    DOC.write_text(text)


if __name__ == "__main__":
    main()
