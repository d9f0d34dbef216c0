"""The Rasa project files: the data validates, and the test stories (every level and the FAQ) pass on
the trained model, NLU included."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.conftest import ROOT
from tools import serve

RASA = str(Path(serve.VENV_BIN) / "rasa")


def rasa(*args: str) -> subprocess.CompletedProcess[str]:
    env = serve.rasa_env(serve.default_ports())
    return subprocess.run([RASA, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_rasa_data_validate_fails_on_nothing() -> None:
    done = rasa("data", "validate", "--fail-on-warnings", "--data", "bot/data")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # Rasa warns about responses that only custom actions send; those must be exactly our actions'.
    unused = set(re.findall(r"The utterance '(\w+)' is not used in any story or rule", done.stderr + done.stdout))
    action_source = "\n".join(path.read_text(encoding="utf-8") for path in (ROOT / "bot" / "actions").glob("*.py"))
    sent_by_rasa = {"utter_default"}  # action_default_fallback, the RulePolicy's core fallback
    for name in unused - sent_by_rasa:
        used = name in action_source or (name.startswith("utter_level_") and 'f"utter_level_{' in action_source)
        assert used, f"{name} is in the domain but neither a rule nor one of our actions sends it"
    # Rasa 3.6 merges the retrieval intent of the NLU data into the domain and then warns that `faq`,
    # which the domain must list (or the validator reports it missing), is duplicated.
    known = ("is not used in any story or rule", "duplicated intents have been found across multiple domain files: faq")
    output = (done.stderr + done.stdout).replace("\n", " ")
    warnings = re.findall(r"UserWarning: (.*?)(?:More info|\x1b|$)", output)
    other = [warning for warning in warnings if not any(k in warning for k in known)]
    assert not other, other


def test_the_test_stories_pass(trained_model: Path, tmp_path: Path) -> None:
    done = rasa("test", "core", "--model", str(trained_model), "--stories", "tests/stories", "--out", str(tmp_path),
                "--fail-on-prediction-errors")  # fmt: skip
    failed = (tmp_path / "failed_test_stories.yml").read_text(encoding="utf-8")
    assert done.returncode == 0 and "None of the test stories failed" in failed, failed + done.stdout[-2000:]
