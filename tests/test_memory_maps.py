"""ilcampaign.engine.run.memory_maps: a worker past half of vm.max_map_count drops JAX's compiled code,
which frees the maps and leaves every function usable; each run in a fresh process, so that the
test worker's own compiled code is left alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import ROOT

COMPILED = """
import json, sys
import jax, jax.numpy as jnp
from ilcampaign.engine.run import memory_maps

functions = [jax.jit(lambda x, i=i: jnp.sin(x) * i + x ** 2) for i in range(150)]
for f in functions:
    f(jnp.ones(3)).block_until_ready()
held = memory_maps.map_count()
untouched = memory_maps.relieve(limit=10 * held)
relieved = memory_maps.relieve(limit=held)
value = float(functions[7](jnp.ones(3))[0])
print(json.dumps({"held": held, "untouched": untouched, "relieved": relieved, "value": value}))
"""

NO_JAX = """
import json, sys
from ilcampaign.engine.run import memory_maps
print(json.dumps({"relieved": memory_maps.relieve(limit=1), "jax": "jax" in sys.modules}))
"""

RUN_TASK = """
import sys
from pathlib import Path
import jax, jax.numpy as jnp
from ilcampaign.engine.run import memory_maps
from ilcampaign.engine.run.runner import run_graph
from tests.test_scheduler import graph

for i in range(50):
    jax.jit(lambda x, i=i: jnp.cos(x) * i)(jnp.ones(3)).block_until_ready()
memory_maps.SHARE = 0.0
run_graph(graph(("a", {}, [])), Path(sys.argv[1]), workers=1, progress=lambda *a: None)
"""


def python(code: str, *args: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_compiled_code_is_dropped_past_the_share_and_functions_still_run():
    """150 small jitted functions hold a few maps each (953 maps against 435 after importing JAX,
    measured); past SHARE of the limit they are dropped and the maps come back (to 505), and a
    dropped function compiles again when called."""
    out = json.loads(python(COMPILED).splitlines()[-1])
    assert out["untouched"] is None
    before, after = out["relieved"]
    assert before >= out["held"] and before - after > 300, out
    assert abs(out["value"] - (7 * 0.8414709848078965 + 1)) < 1e-5  # float32


def test_a_worker_without_jax_has_nothing_to_drop_and_does_not_import_it():
    out = json.loads(python(NO_JAX).splitlines()[-1])
    assert out == {"relieved": None, "jax": False}


def test_a_task_that_leaves_the_worker_past_the_share_is_journalled(tmp_path):
    """run_task checks after each task; the drop is an event in the step's journal."""
    python(RUN_TASK, str(tmp_path / "wd"))
    journals = list((tmp_path / "wd" / "archive" / "steps").glob("*/journal.jsonl"))
    events = [json.loads(line) for path in journals for line in path.read_text().splitlines()]
    dropped = [event for event in events if event["event"] == "compiled_code_dropped"]
    assert len(dropped) == 1 and dropped[0]["task"] == "wait"
    assert dropped[0]["maps_after"] < dropped[0]["maps"]
