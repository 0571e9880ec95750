"""pipeline/__init__.py: what importing the package does to the process."""

import subprocess
import sys
import textwrap

import pytest

# A process with a live gRPC server and channel forks children that close their descriptors
# before exec (a preexec_fn makes subprocess fork rather than spawn). With gRPC's fork support
# on, as its core defaults, about one child in ten aborted ("epoll_wait error: Bad file
# descriptor", SIGABRT): the storage proxy's sweeps died of it.
FORKS = textwrap.dedent(
    """
    import subprocess, sys
    from concurrent import futures
    if sys.argv[1] == "pipeline":
        import pipeline  # noqa: F401 - before grpc, as every command of ours imports it
    import grpc

    server = grpc.server(futures.ThreadPoolExecutor(2))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    grpc.channel_ready_future(channel).result(timeout=30)
    codes = [subprocess.Popen(["true"], preexec_fn=lambda: None).wait() for _ in range(200)]
    print(sum(code != 0 for code in codes))
    """
)


def _aborted_children(first_import: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", FORKS, first_import],
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in __import__("os").environ.items() if not k.startswith("GRPC_")},
    )
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip())


def test_importing_the_package_makes_a_process_with_grpc_channels_safe_to_fork():
    assert _aborted_children("pipeline") == 0


def test_without_it_the_same_forks_abort_so_the_test_above_can_fail():
    if _aborted_children("grpc") == 0:  # 200 forks without an abort: about 1 in 30,000 here
        pytest.skip("this gRPC no longer aborts forked children: the setting may go")
