"""scorezoo.utils: the thread-count guard that library calls run under."""

import pytest
import torch

from scorezoo.utils import torch_threads


def test_torch_threads_sets_then_restores_also_on_error():
    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    with torch_threads(other):
        assert torch.get_num_threads() == other
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), torch_threads(other):
        raise RuntimeError("a failed training step")
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="positive integer"), torch_threads(-2):
        pass
    assert torch.get_num_threads() == before
