"""Start the worker: ``python -m erlport_worker`` or the ``erlport-worker`` script.

Start-up moves the protocol off the standard fds (so nothing but the worker
can write frames), installs ``print`` -> ``'P'`` frames and the SIGTERM
handler, then serves until the port closes. Exit is ``os._exit``: calls still
running on daemon threads must not keep a process alive whose port is gone.
"""
from __future__ import annotations

import gc
import logging
import os
import signal
import sys

from . import cli
from .framing import enlarge_pipe

log = logging.getLogger("erlport_worker")


def claim_protocol_fds(use_stdio: bool):
    """Return private (close-on-exec) copies of the protocol fds; free the originals.

    With stdio, fd 0 becomes /dev/null and fd 1 becomes a copy of stderr, so
    C extensions and child processes that write to "stdout" cannot corrupt
    the stream, and children cannot eat protocol input. Without stdio the
    protocol fds 3/4 are closed after copying, so no child inherits them.
    """
    in_fd, out_fd = (0, 1) if use_stdio else (3, 4)
    private_in, private_out = os.dup(in_fd), os.dup(out_fd)
    enlarge_pipe(private_in)
    enlarge_pipe(private_out)
    if use_stdio:
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        os.dup2(2, 1)
    else:
        os.close(in_fd)
        os.close(out_fd)
    return private_in, private_out


def main(argv=None) -> None:
    """Run the worker with ``argv`` (default: the process arguments) and exit."""
    options = cli.parse(sys.argv[1:] if argv is None else argv)
    # Imported only now, so that `-V` (stock ErlPort's probe, with a
    # timeout) answers without loading the codec and numpy.
    from .server import EXIT_INTERNAL, NoStdin, PrintStream, Terminated, Worker
    from .stock_api import SHIM_PATH

    def terminate(signum, frame):
        raise Terminated()

    cli.configure_logging(options.log_level)
    sys.path[:0] = options.paths
    # Last, so that stock ErlPort's own package wins wherever it is on the path.
    sys.path.append(SHIM_PATH)
    status = EXIT_INTERNAL
    try:
        in_fd, out_fd = claim_protocol_fds(options.use_stdio)
        worker = Worker(options, in_fd, out_fd)
        sys.stdout = PrintStream(worker)
        if options.strict:
            sys.stdin = NoStdin()
        signal.signal(signal.SIGTERM, terminate)
        # Start-up objects (numpy, the codec, ...) live for good: keeping
        # them out of the collector's view makes full collections short.
        gc.freeze()
        status = worker.serve()
    except BaseException:
        log.exception("worker failed")
    finally:
        logging.shutdown()
        sys.stderr.flush()
        os._exit(status)


if __name__ == "__main__":
    main()
