"""The headless notebook client (course_lib.notebooks.notebook_client): waits that re-poll their socket."""
import asyncio
import time
from queue import Empty

import pytest

from course_lib.notebooks import _sliced, notebook_client


class LostWakeUpChannel:
    """A channel whose message arrives at ``arrives`` seconds but whose wake-up is lost, as with ZeroMQ's
    edge-triggered descriptor: a wait without a timeout never returns; a wait with one looks again when it
    ends and returns the message if it is there by then."""

    def __init__(self, arrives: float):
        self.t0, self.arrives, self.waits = time.monotonic(), arrives, []

    async def get_msg(self, timeout=None):
        self.waits.append(timeout)
        if timeout is None:
            await asyncio.sleep(3600)
        await asyncio.sleep(timeout)
        if time.monotonic() - self.t0 >= self.arrives:
            return {"msg_type": "execute_reply"}
        raise Empty


def test_a_message_whose_wake_up_was_lost_is_found_at_the_end_of_a_slice():
    channel = LostWakeUpChannel(arrives=0.12)
    t0 = time.monotonic()
    msg = asyncio.run(asyncio.wait_for(_sliced(channel.get_msg, 0.05)(timeout=None), 5))
    assert msg == {"msg_type": "execute_reply"}
    assert time.monotonic() - t0 < 1.0
    assert None not in channel.waits and len(channel.waits) >= 3 and max(channel.waits) <= 0.05


def test_the_overall_timeout_is_kept_and_empty_raised_only_after_it():
    channel = LostWakeUpChannel(arrives=60)
    t0 = time.monotonic()
    with pytest.raises(Empty):
        asyncio.run(_sliced(channel.get_msg, 0.05)(timeout=0.2))
    waited = time.monotonic() - t0
    assert 0.19 <= waited < 1.0
    assert abs(sum(channel.waits) - 0.2) < 0.02 and max(channel.waits) <= 0.05


def test_a_zero_timeout_looks_once():
    channel = LostWakeUpChannel(arrives=60)
    with pytest.raises(Empty):
        asyncio.run(_sliced(channel.get_msg, 0.05)(timeout=0))
    assert channel.waits == [0]


def test_the_client_wraps_shell_and_iopub_in_both_its_blocking_and_async_forms(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("nbclient")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(6 * 7)")])
    client = notebook_client(nb, slice_s=0.25, timeout=60, kernel_name="python3",
                             resources={"metadata": {"path": str(tmp_path)}})
    with client.setup_kernel():            # the blocking form: nbclient's setup_kernel
        for channel in (client.kc.shell_channel, client.kc.iopub_channel):
            assert hasattr(channel.get_msg, "__wrapped__")
        client.execute_cell(nb.cells[0], 0)
    assert nb.cells[0].outputs[0]["text"] == "42\n"
    nb.cells[0].outputs, wrapped = [], []
    client = notebook_client(nb, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}},
                             on_cell_executed=lambda **_: wrapped.append(hasattr(client.kc.shell_channel.get_msg, "__wrapped__")))
    client.execute()                       # the async form: execute()
    assert nb.cells[0].outputs[0]["text"] == "42\n" and wrapped == [True]
