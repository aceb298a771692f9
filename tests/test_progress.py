"""A quiet, readable terminal during a run: a spinner with elapsed time while the policy loads,
the engine starts and the held-out eval runs; log lines printed above the progress bar, never
through it; transformers' own warnings in log.txt, not on screen."""

from __future__ import annotations

import io
import logging
import re

from rich.console import Console
from test_train_e2e import make_recipe

import rlvr.console
from rlvr.trainer import Trainer

ANSI = re.compile(r"\x1b\[[0-9;?]*[a-zA-Z]")


def test_spinners_bar_and_log_lines_share_one_console(
    tiny_model_dir, tmp_path, fixtures_dir, monkeypatch
) -> None:
    buf = io.StringIO()
    monkeypatch.setattr(rlvr.console, "_CONSOLE", Console(file=buf, force_terminal=True, width=120))
    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    rlvr.console.setup_logging()
    try:
        recipe = make_recipe(
            tiny_model_dir,
            tmp_path,
            fixtures_dir,
            train__steps=2,
            train__threads=1,
            eval__before=True,
            eval__num_problems=2,
            eval__samples=1,
            logging__progress=True,
            logging__plots=False,
            logging__tensorboard=False,
            checkpoint__save_final=False,
        )
        trainer = Trainer(recipe)
        step = trainer.train_step

        def noisy(n: int):
            logging.getLogger("rlvr").warning("a log line at step %d", n)
            logging.getLogger("transformers.generation").warning("a third-party warning")
            return step(n)

        monkeypatch.setattr(trainer, "train_step", noisy)
        try:
            trainer.train()
        finally:
            trainer.close()
    finally:
        for h in list(root.handlers):
            if h not in before[0]:
                root.removeHandler(h)
        root.setLevel(before[1])
    frames = ANSI.sub("", buf.getvalue()).replace("\r", "\n").splitlines()
    text = "\n".join(frames)
    assert "loading the policy from" in text and "0:00:0" in text  # spinner + elapsed
    assert "starting the hf rollout engine" in text
    assert "eval before training: 2 held-out problems" in text
    bar = [f for f in frames if f.startswith("train ") and "/2" in f]
    assert bar, frames[-10:]
    logged = [f for f in frames if "a log line at step" in f]
    assert len(logged) == 2 and all("━" not in f and "/2" not in f for f in logged)
    assert "a third-party warning" not in text  # below ERROR: file only
    assert "a third-party warning" in (recipe.run_dir / "log.txt").read_text()
    # the report reads the real run directory the trainer wrote
    from rlvr.report import write_report

    page = write_report([recipe.run_dir]).read_text()
    assert "<figcaption>reward/mean</figcaption>" in page and "recipe.yaml" in page
