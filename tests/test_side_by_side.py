"""`tools.side_by_side`: grids in one row under their captions; bad input is one line."""

import subprocess
import sys

import matplotlib.image as mpimg
import numpy as np
import pytest

from tools.side_by_side import side_by_side


def test_two_grids_in_one_row(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    mpimg.imsave(a, np.zeros((80, 60)), cmap="gray")
    mpimg.imsave(b, np.ones((80, 60)), cmap="gray")
    out = tmp_path / "out" / "ab.png"
    side_by_side([(str(a), "base"), (str(b), "tilted")], str(out), title="paired")
    im = mpimg.imread(out)
    assert im.shape[1] > im.shape[0]  # one row: wider than tall
    assert im.shape[1] >= 120  # at least both images' widths


@pytest.mark.parametrize(
    "args, said",
    [(["x.png"], "PATH CAPTION pairs"), (["missing.png", "cap"], "no such image: missing.png")],
)
def test_bad_input_is_one_line(tmp_path, args, said, repo_root):
    cmd = [sys.executable, "-m", "tools.side_by_side", *args, "--out", str(tmp_path / "o.png")]
    out = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and said in lines[0], out.stderr
