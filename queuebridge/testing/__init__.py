"""Test helpers for queuebridge and its plugins: the backend contract suite.

    from queuebridge.testing import BackendContract

    class TestMyBackend(BackendContract):
        @pytest.fixture
        def make_backend(self): ...
        @pytest.fixture
        def unreachable_backend(self): ...
"""

from queuebridge.testing.contract import BackendContract, MakeBackend

__all__ = ["BackendContract", "MakeBackend"]
