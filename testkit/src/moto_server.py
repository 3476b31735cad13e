"""Runs moto in server mode on a free loopback port for the Rust tests.

Prints the port as the only line of stdout, then serves until stdin closes: the test process
holds the other end, so moto ends with it even when the tests are killed.
"""
import contextlib
import sys

from moto.server import ThreadedMotoServer

import moto_cloudformation  # noqa: F401  (parameters validated as CloudFormation does)
import moto_events  # noqa: F401  (events carry their account, as EventBridge's do)
import moto_s3  # noqa: F401  (S3 answers as the API reference words them)
import moto_servicecatalog  # noqa: F401  (adds the Service Catalog operations moto lacks)

server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
with contextlib.redirect_stdout(sys.stderr):  # moto's start-up banner
    server.start()
print(server._server.server_port, flush=True)
sys.stdin.read()
server.stop()
