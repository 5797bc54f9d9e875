"""Test support in one place: real servers, in-process services, waiting with deadlines."""

from chorus_common.natsserver import NatsServer, free_port
from chorus_common.processes import ServiceProcess
from chorus_common.testing._inprocess import serve_in_process
from chorus_common.testing._metrics import metric_value
from chorus_common.testing._recorder import ReceivedRequest, RequestRecorder
from chorus_common.testing._redis import RedisServer
from chorus_common.testing._wait import wait_for, wait_until

__all__ = [
    "NatsServer",
    "ReceivedRequest",
    "RedisServer",
    "RequestRecorder",
    "ServiceProcess",
    "free_port",
    "metric_value",
    "serve_in_process",
    "wait_for",
    "wait_until",
]
