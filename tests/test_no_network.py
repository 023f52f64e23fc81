"""Importing the package touches no network (a student may be offline)."""

import subprocess
import sys

CODE = """
import socket
def refuse(*args, **kwargs):
    raise RuntimeError("network call during import")
socket.socket.connect = refuse
socket.create_connection = refuse
import tutorial_utils, tutorial_utils.models, tutorial_utils.tasks, tutorial_utils.validation
import tutorial_utils.plotting, tutorial_utils.induction, tutorial_utils.gpt2_tokenizer
import tutorial_utils.graph, tutorial_utils.interchange, tutorial_utils.tasks.metrics
import tutorial_utils.circuits, tutorial_utils.path_patching, tutorial_utils.faithfulness
import tutorial_utils.readout, tutorial_utils.logit_lens, tutorial_utils.dla, tutorial_utils.names
print("ok")
"""


def test_import_makes_no_network_call():
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
