"""The AMQP backend passes the core's backend contract suite against RabbitMQ."""

from __future__ import annotations

import amqp
import pytest
from queuebridge_kombu.amqp import AMQPBackend

from queuebridge.backend import Backend
from queuebridge.testing import BackendContract, MakeBackend
from queuebridge.testing.plugin import free_port
from tests.kombu.amqp_helpers import amqp_backend


@pytest.mark.usefixtures("rabbitmq")
class TestAMQPContract(BackendContract):
    @pytest.fixture
    def make_backend(self, amqp_backends: list[Backend]) -> MakeBackend:
        def make(**overrides: object) -> Backend:
            backend = amqp_backend(**overrides)
            amqp_backends.append(backend)
            return backend

        return make

    @pytest.fixture
    def unreachable_backend(self) -> Backend:
        return amqp_backend(f"amqp://guest:guest@127.0.0.1:{free_port()}//",
                            timeout=0.5, connect_timeout=0.5)

    def inject_malformed(self, backend: Backend, queue: str) -> None:
        assert isinstance(backend, AMQPBackend)
        backend.dead_letters(queue, 1)  # declares the queue (depth only looks)
        import kombu

        with kombu.Connection("amqp://guest:guest@127.0.0.1:5672//") as conn:
            channel = conn.channel()
            channel.basic_publish(amqp.Message(b'{"v": 1, "id": "x"', delivery_mode=2),
                                  exchange="", routing_key=queue)
