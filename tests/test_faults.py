from __future__ import annotations

import subprocess
import sys


def test_faults_only_when_named() -> None:
    code = (
        "from visionality.faults import inject, InjectedFault\n"
        "inject('pii')\n"
        "try:\n    inject('budget')\nexcept InjectedFault:\n    print('raised')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={"VISIONALITY_INJECT_FAULTS": "budget"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "raised"
    from visionality.errors import VisionalityError
    from visionality.faults import InjectedFault

    assert not issubclass(InjectedFault, VisionalityError)  # it must travel the path of an unexpected bug
