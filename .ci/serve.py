"""Serve a directory on 127.0.0.1 on a port the OS picks; write the port to a file once listening.

Picking the port avoids ever testing a page served by some other process that holds a fixed port.
Usage: python3 serve.py DIR PORT_FILE
"""
import functools
import http.server
import os
import sys

directory, port_file = sys.argv[1], sys.argv[2]


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


handler = functools.partial(QuietHandler, directory=directory)
with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
    with open(port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    os.replace(port_file + ".tmp", port_file)
    server.serve_forever()
