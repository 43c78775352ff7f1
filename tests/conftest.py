import pytest
import torch


@pytest.fixture(autouse=True)
def _threads():
    # Two cores on the CI machine: keep each test to the physical cores.
    torch.set_num_threads(2)
    yield
