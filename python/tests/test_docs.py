"""docs/PYTHON.md's worked example (python/examples/flow_example.py) runs, and prints what the docs show on
the lines that do not depend on rounding (the trajectory, the errors)."""
import os
import subprocess
import sys

from conftest import ROOT


def test_worked_example_runs_as_documented():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    r = subprocess.run([sys.executable, str(ROOT / "python" / "examples" / "flow_example.py")], capture_output=True,
                       text=True, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    doc = (ROOT / "docs" / "PYTHON.md").read_text()
    shown = doc.split("Output (real,")[1].split("```")[1].strip().splitlines()
    got = r.stdout.strip().splitlines()
    assert len(got) == len(shown)
    for g, s in zip(got, shown):
        if g.startswith(("FlowResult(", "loss ", "ValueError:", "  last output time")):
            assert g == s
