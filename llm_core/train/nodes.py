"""Training over several machines: torchrun's c10d rendezvous (``train.nodes``).

The stage's machine is node 0's host: it runs ``torchrun --nnodes N --rdzv_backend c10d
--rdzv_endpoint host:port`` with its ``nproc_per_node`` processes and hosts the rendezvous
store; each other machine runs ``llmpipe train-node <job.json>``, the same command from the job
file the stage wrote (on a filesystem every node mounts, where the data root lives). torchrun
waits ``join_timeout_s`` for all of them, then ranks are numbered over the nodes and the run is
the same as one node's with as many processes: the same checkpoints, resumable on the same
number of processes, the same ``model.pt`` (written by global rank 0, wherever it runs).

DeepSpeed's own launcher (a hostfile, ``pdsh`` / ssh into every host) is not used: it needs
passwordless ssh between the machines, where a rendezvous needs only a reachable port.
"""

from __future__ import annotations

import errno
import socket
from pathlib import Path

from llm_core.errors import StageError
from llm_core.train.config import NodesConfig

STAGE = "train"


def host_and_port(endpoint: str) -> tuple[str, int]:
    host, _, port = endpoint.rpartition(":")
    return host.strip("[]"), int(port)


def rendezvous_args(nodes: NodesConfig, job_file: Path) -> list[str]:
    """torchrun's arguments to meet the other nodes; the rendezvous id is the output being built
    (its folder's name, the same wherever the shared filesystem is mounted)."""
    return [f"--nnodes={nodes.count}", "--rdzv_backend=c10d", f"--rdzv_endpoint={nodes.rendezvous}",
            f"--rdzv_id={Path(job_file).parent.name}", f"--rdzv_conf=join_timeout={int(nodes.join_timeout_s)}"]


def check_rendezvous(nodes: NodesConfig) -> None:
    """The rendezvous endpoint must be an address of this machine with the port free: the
    stage's torchrun hosts the store there. Said before any process starts, naming the setting."""
    host, port = host_and_port(nodes.rendezvous)
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as exc:
        raise StageError(STAGE, f"train.nodes.rendezvous: the host {host!r} does not resolve ({exc.strerror})",
                         retryable=False) from None
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            why = {errno.EADDRNOTAVAIL: f"{host} is not an address of this machine (the stage's machine hosts the "
                                        "rendezvous: give its address, which the other nodes reach)",
                   errno.EADDRINUSE: f"port {port} is in use on this machine"}.get(exc.errno, str(exc))
            raise StageError(STAGE, f"train.nodes.rendezvous {nodes.rendezvous}: {why}", retryable=False) from None


def rendezvous_timed_out(output: str) -> bool:
    """Whether torchrun gave up waiting for the other nodes."""
    return "RendezvousTimeoutError" in output
