import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """These tests run tiny convolutions: one intra-op thread is as fast as two on an idle machine and does not
    stall (OpenMP threads spinning at barriers) when the two cores are shared with other work."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
