"""ilcampaign.engine.run.compilation: a task's JAX compile time is counted apart from its work and
kept in the step's record; each run in a fresh process, so that nothing compiled before counts."""

from __future__ import annotations

import json

from tests.test_memory_maps import python

COUNTED = """
import json, sys
from ilcampaign.engine.run import compilation

compilation.listen()  # before JAX is loaded: nothing to listen to, and JAX stays unloaded
unloaded = "jax" not in sys.modules and compilation.spent() == 0.0
import jax, jax.numpy as jnp
compilation.listen()
compilation.listen()  # once only: a second listener would count twice
f = jax.jit(lambda x: jnp.sin(x) @ x)
f(jnp.ones((8, 8))).block_until_ready()
compiled = compilation.spent()
f(jnp.ones((8, 8))).block_until_ready()  # compiled already
again = compilation.spent()
f(jnp.ones((9, 9))).block_until_ready()  # a new shape is a new program
print(json.dumps({"unloaded": unloaded, "compiled": compiled, "again": again, "new_shape": compilation.spent()}))
"""

RUN_TASK = """
import sys
from pathlib import Path
from typing import ClassVar
from ilcampaign.archive.store import Archive
from ilcampaign.engine.graph import Node
from ilcampaign.engine.hashing import step_key
from ilcampaign.engine.run.runner import run_graph
from ilcampaign.engine.step import SingleTaskStep, TaskResult, register
from tests.test_scheduler import graph


@register
class Compiles(SingleTaskStep):
    kind: ClassVar[str] = "test_compiles"
    task: ClassVar[str] = "compile"
    inputs: ClassVar[tuple[str, ...] | None] = None

    def run_task(self, ctx, task_id):
        import jax, jax.numpy as jnp

        from ilcampaign.engine.models.apax import enable_compilation_cache

        enable_compilation_cache(ctx.jax_cache)
        for i in range(20):
            jax.jit(lambda x, i=i: jnp.cos(x) * i)(jnp.ones(3)).block_until_ready()
        return TaskResult([], {})

    def finish(self, ctx):
        return [], {}


step = Compiles()
nodes = graph(("wait", {}, [])) + [Node("compiles", step, {}, key=step_key(step.kind, step.version, step, {}))]
workdir = Path(sys.argv[1])
run_graph(nodes, workdir, workers=1, progress=lambda *a: None)
archive = Archive(workdir / "archive")
for node in nodes:
    record = archive.record(node.key)
    print(node.name, archive.done_tasks(node.key)[node.step.task]["compile_s"], record["task_compile_s"],
          record["task_wall_s"])
"""


def test_compilation_is_counted_once_per_program_and_never_loads_jax():
    out = json.loads(python(COUNTED).splitlines()[-1])
    assert out["unloaded"]
    assert out["compiled"] > 0 and out["again"] == out["compiled"] and out["new_shape"] > out["again"]


def test_each_task_reports_its_compile_time_and_the_record_sums_it(tmp_path):
    """A task that compiles 20 functions reports their time apart from its wall time; a task that
    loads no JAX reports none, and the step's record sums its tasks'."""
    lines = dict(line.split(" ", 1) for line in python(RUN_TASK, str(tmp_path / "wd")).splitlines()[-2:])
    wait = [float(x) for x in lines["wait"].split()]
    compiles = [float(x) for x in lines["compiles"].split()]
    assert wait[:2] == [0.0, 0.0]
    assert 0 < compiles[0] == compiles[1] <= compiles[2]
