"""llm_core is a plain library: importing every stage and the tracking never brings Prefect in."""

import subprocess
import sys


def test_llm_core_does_not_import_prefect():
    code = ("import sys, llm_core.stages, llm_core.tracking, llm_core.train.worker, llm_core.gc, llm_core.runs; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('prefect', 'flows', 'tasks')); "
            "assert not bad, bad")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
