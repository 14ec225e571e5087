"""The core's backend contract suite against private redis-servers: plain TCP and TLS."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from queuebridge_rq import RQBackend
from queuebridge_rq.records import QueueKeys, job_key

from queuebridge.backend import Backend
from queuebridge.testing import BackendContract, MakeBackend
from queuebridge.testing.plugin import free_port
from tests.rq.servers import MakeRQ, RedisServer


class TestRQContract(BackendContract):
    """Plain TCP."""

    @pytest.fixture
    def server(self, redis_server: RedisServer) -> RedisServer:
        return redis_server

    @pytest.fixture
    def make_backend(self, server: RedisServer, make_rq: MakeRQ) -> Iterator[MakeBackend]:
        def make(**overrides: Any) -> Backend:
            return make_rq(server.url, options=dict(server.options), **overrides)

        yield make

    @pytest.fixture
    def unreachable_backend(self, make_rq: MakeRQ) -> Backend:
        return make_rq(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5, connect_timeout=0.5)

    def inject_malformed(self, backend: Backend, queue: str) -> None:
        """A job hash whose ``data`` is not JSON, pushed like a real job."""
        assert isinstance(backend, RQBackend)
        job_id = f"bad-{uuid.uuid4().hex}"
        backend.client.hset(job_key(job_id), mapping={"data": b"\x00not json", "status": "queued"})
        backend.client.rpush(QueueKeys.for_queue(queue).queue, job_id)


class TestRQContractTLS(TestRQContract):
    """The same suite through ``rediss://`` with a throwaway CA."""

    @pytest.fixture
    def server(self, tls_redis: RedisServer) -> RedisServer:
        return tls_redis

    @pytest.fixture
    def unreachable_backend(self, make_rq: MakeRQ, tls_redis: RedisServer) -> Backend:
        return make_rq(f"rediss://127.0.0.1:{free_port()}/0", options=dict(tls_redis.options),
                       timeout=0.5, connect_timeout=0.5)
