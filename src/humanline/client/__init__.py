"""humanline's Python SDK: a client for each kind of caller.

- `HandoffClient` for upstream bots: request a human, watch the handoff, cancel it, record
  the customer's feedback.
- `AgentClient` for agents' apps: log in, take offers as an async iterator, accept, decline,
  complete; it heartbeats, and reconnects and resumes the session by itself.
- `PoolClient` for ops: agents, the pool's status, quality reports and alerts, exports and
  routing policies.

Each takes the server's address (`HUMANLINE_TARGET`, else 127.0.0.1:50051) and the caller's
token (`humanline token issue`), returns the API's typed protobuf messages, and raises
`ApiError` (code, reason, field violations) when a call fails. See docs/ for a guide per
kind of caller. `credentials` holds the helpers the simulator, the bench and the tests use
to play several callers at once over one channel.
"""

from humanline.client.agents import AgentClient
from humanline.client.connection import Backoff, Client, tls
from humanline.client.errors import ApiError, CommandRejected, FieldViolation, SessionInterrupted
from humanline.client.handoffs import HandoffClient
from humanline.client.pool import PoolClient
from humanline.v1.handoff_pb2 import RiskSignals

__all__ = [
    "AgentClient",
    "ApiError",
    "Backoff",
    "Client",
    "CommandRejected",
    "FieldViolation",
    "HandoffClient",
    "PoolClient",
    "RiskSignals",
    "SessionInterrupted",
    "tls",
]
