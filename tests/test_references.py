"""References: a CSV path's time column is its time base (resampled to the control period),
and a trajectory longer than the board's buffer is refused with the limit named."""

from __future__ import annotations

import numpy as np
import pytest

from nnmpc.host.errors import NnmpcError
from nnmpc.host.link.client import DeviceClient, Hello
from nnmpc.host.loop.references import reference, reference_csv
from nnmpc.host.plants import get_plant


def test_csv_time_column_is_the_time_base(tmp_path):
    """A 5 s path given at 0, 1 and 5 s runs 5 s at 100 Hz (501 periods), linearly between
    its points, not one row per period (which ran it in 0.03 s)."""
    p = tmp_path / "ref.csv"
    p.write_text("# a path\nt,x,y\n0,0,0\n1,10,0\n5,10,20\n")
    r = reference(get_plant("tendon"), str(p))
    assert r.shape == (501, 3)
    np.testing.assert_allclose(r[[0, 50, 100, 300, 500], :2],
                               [[0, 0], [5, 0], [10, 0], [10, 10], [10, 20]], atol=1e-9)
    assert np.all(r[:, 2] == 0)                       # z is not tracked
    # --duration cuts it, or holds its last point
    assert len(reference(get_plant("tendon"), str(p), 2.0)) == 200
    longer = reference(get_plant("tendon"), str(p), 8.0)
    assert len(longer) == 800 and np.all(longer[500:, :2] == [10, 20])
    # a time base that starts later and a coarser step: same path
    p.write_text("t,ref_x,ref_y\n2.0,0,0\n3.0,10,0\n7.0,10,20\n")
    np.testing.assert_allclose(reference_csv(p, ["x", "y", "z"], ["x", "y"], 0.01), r)


def test_csv_without_time_is_one_row_per_period(tmp_path):
    p = tmp_path / "ref.csv"
    p.write_text("x,y\n1,2\n3,4\n")
    np.testing.assert_array_equal(reference(get_plant("tendon"), str(p))[:, :2], [[1, 2], [3, 4]])


@pytest.mark.parametrize("text,msg", [
    ("t,x,y\n0,0,0\n1,1,1\n1,2,2\n", r"row 4, column t: time does not increase"),
    ("t,x,y\n0,0,0\n1,abc,1\n", r"row 3, column x: 'abc' is not a number"),
    ("t,x\n0,0\n", r"needs a column 'y' or 'ref_y' \(has t, x\)"),
])
def test_bad_csv_reference_is_one_line_naming_row_and_column(tmp_path, text, msg):
    p = tmp_path / "ref.csv"
    p.write_text(text)
    with pytest.raises(NnmpcError, match=msg):
        reference(get_plant("tendon"), str(p))


class _Board:
    """Just enough of a port for DeviceClient.upload_trajectory to check the length first."""
    in_waiting = 0
    timeout = 0.1

    def write(self, data):
        raise AssertionError("nothing may be sent for a trajectory that cannot fit")


def test_trajectory_longer_than_the_buffer_is_refused_with_the_limit():
    c = DeviceClient(_Board())
    c.hello_info = Hello(3, 3, 3, "h", "qemu-m4f", "0.2.0", traj_max=4096)
    with pytest.raises(NnmpcError, match=r"holds 4096 values: at most 1365 rows = 13\.65 s at "
                                         r"100 Hz"):
        c.upload_trajectory(np.zeros((2000, 3)), 0.01)
