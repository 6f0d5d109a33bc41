#!/usr/bin/env python3
"""Run the `tahoe` command line with every listener bound to 127.0.0.1.

Usage (with the tahoe-lafs virtualenv's python):

    VENV/bin/python scripts/tahoe_loopback.py run --allow-stdin-close NODEDIR

Why: tahoe-lafs 1.20.0 opens a foolscap "log tub" (for `flogtool tail`) in
every node, and there is no tahoe.cfg setting for it.  The call chain is
`Node.create_log_tub` -> `allmydata.util.iputil.listenOnUnused` ->
`iputil._foolscapEndpointForPortNumber`, which does `s.bind(('', 0))`: a
listener on *all* interfaces.  The node's other listeners (tub.port,
web.port) are configured by scripts/dev-grid to bind 127.0.0.1 already.

This wrapper replaces `_foolscapEndpointForPortNumber` with a copy that binds
127.0.0.1 and then calls tahoe's normal entry point
(`allmydata.scripts.runner.run`), so the command line is exactly `tahoe`'s.
`listenOnUnused` looks the helper up as a module global at call time, so
patching the module attribute is enough.

It fails loudly (exit 3) if the installed tahoe-lafs does not have the
expected internals, rather than silently listening on 0.0.0.0.
"""

import os
import socket
import sys

LOOPBACK = "127.0.0.1"


def _patch():
    from allmydata.util import iputil

    needed = (
        "_foolscapEndpointForPortNumber",
        "listenOnUnused",
        "fcntl",
        "IReactorSocket",
        "fileDescriptorResource",
        "AdoptedStreamServerEndpoint",
        "CleanupEndpoint",
    )
    missing = [name for name in needed if not hasattr(iputil, name)]
    if missing:
        sys.stderr.write(
            "tahoe_loopback.py: allmydata.util.iputil lacks %s; this wrapper was "
            "written for tahoe-lafs 1.20.0 and must be updated\n" % ", ".join(missing)
        )
        sys.exit(3)

    def _loopback_endpoint_for_port_number(portnum):
        # Same logic as tahoe-lafs 1.20.0's iputil._foolscapEndpointForPortNumber,
        # except that the socket is bound to 127.0.0.1 instead of ''.
        if portnum is None:
            from twisted.internet import reactor

            if iputil.fcntl is not None and iputil.IReactorSocket.providedBy(reactor):
                s = socket.socket()
                try:
                    s.bind((LOOPBACK, 0))
                    portnum = s.getsockname()[1]
                    s.listen(1)
                    iputil.fileDescriptorResource.allocate()
                    fd = os.dup(s.fileno())
                    fcntl = iputil.fcntl
                    flags = fcntl.fcntl(fd, fcntl.F_GETFD)
                    flags = flags | os.O_NONBLOCK | fcntl.FD_CLOEXEC
                    fcntl.fcntl(fd, fcntl.F_SETFD, flags)
                    endpoint = iputil.AdoptedStreamServerEndpoint(
                        reactor, fd, socket.AF_INET
                    )
                    return (portnum, iputil.CleanupEndpoint(endpoint, fd))
                finally:
                    s.close()
            # No adoptable sockets (not expected on Linux): pick a port and
            # let Twisted bind it, on loopback.
            s = socket.socket()
            try:
                s.bind((LOOPBACK, 0))
                portnum = s.getsockname()[1]
            finally:
                s.close()
        return (portnum, "tcp:%d:interface=%s" % (portnum, LOOPBACK))

    iputil._foolscapEndpointForPortNumber = _loopback_endpoint_for_port_number


def main():
    _patch()
    from allmydata.scripts.runner import run

    sys.argv[0] = "tahoe"
    sys.exit(run())


if __name__ == "__main__":
    main()
