"""moto's S3 server, answering one request at a time.

moto's own `moto_server` is threaded, and under load it checks a conditional write's condition and
applies the write in separate steps: two compare-and-swaps on one ETag can both succeed (seen in
CI: 39 of 40 increments of a counter survived). S3 lets exactly one win. Serving one request at a
time restores that guarantee, which the concurrency tests exist to check maas against.

Usage: python moto_serial.py HOST PORT
"""

import os
import sys

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple

host, port = sys.argv[1], int(sys.argv[2])
os.environ.setdefault("MOTO_PORT", str(port))
run_simple(
    host,
    port,
    DomainDispatcherApplication(create_backend_app),
    threaded=False,
    request_handler=MotoRequestHandler,
)
