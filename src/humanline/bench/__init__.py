"""`humanline bench`: humanline's throughput, time to offer and memory per stream, measured
beside the ceiling of a bare grpc.aio service on the same machine.

`run` runs the phases (fresh servers, spawned client processes), `clients` and `agents` are the
load generators, `echo` is the ceiling, `report` the goals and the table, `system` what is read
from the machine, `postgres` the throw-away databases.
"""
