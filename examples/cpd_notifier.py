"""Captive portal detection with a system state notifier (lws minimal-lws-api-cpd and
``lws_system`` notifiers).

    python examples/cpd_notifier.py

The example serves its own "network" on 127.0.0.1 (a stdlib HTTP server on a thread):
at first a captive portal, which answers the probe URL with a redirect to its login
page; a moment later the "user logs in" and the same URL answers 204. The application
registers a state notifier that holds the system before REGISTERED (say, "do not
register with the cloud from behind a portal") until CPD reports the internet; on a
CAPTIVE_PORTAL result it shows the portal's URL and asks for another probe after the
login. When CPD reports INTERNET_OK the notifier lets the state machine go on, and the
example ends once the system is OPERATIONAL.
"""

from __future__ import annotations

import http.server
import threading
from typing import Any

from lwspy import Context, CpdResult, SmdClass, SystemState

portal: dict[str, Any] = {"logged_in": False, "login": ""}


class Network(http.server.BaseHTTPRequestHandler):
    """A captive portal until the login, then the internet (204 for the probe URL)."""

    def do_GET(self) -> None:
        if portal["logged_in"]:
            self.send_response(204)
        else:
            self.send_response(302)
            self.send_header("Location", portal["login"])
            self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet


def main() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Network)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/generate_204"
    portal["login"] = f"http://127.0.0.1:{server.server_port}/login"
    with Context(cpd_url=url, netlink=False) as ctx:

        def notifier(current: SystemState, target: SystemState) -> bool:
            if target is SystemState.REGISTERED and ctx.cpd.result is not CpdResult.INTERNET_OK:
                print(f"notifier: holding at {current.name} until CPD finds the internet")
                return False
            if target is SystemState.OPERATIONAL:
                print("notifier: OPERATIONAL")
                ctx.call_later(0, ctx.stop)
            return True

        def network(cls: SmdClass, ts: float, payload: bytes) -> None:
            if b'"cpd"' not in payload:
                return
            print(f"smd: {payload.decode()}")
            if ctx.cpd.result is CpdResult.CAPTIVE_PORTAL:
                print(f"cpd: captive portal, log in at {ctx.cpd.portal_url}")
                portal["logged_in"] = True  # the user logs in ...
                ctx.call_later(0.2, ctx.cpd.start)  # ... and the app probes again
            elif ctx.cpd.result is CpdResult.INTERNET_OK:
                print("cpd: internet OK")
                ctx.system.resume()  # let the held step go on

        ctx.system.register_notifier(notifier)
        ctx.smd.register(network, SmdClass.NETWORK)
        ctx.call_later(15.0, ctx.stop)  # a bound, should something not answer
        ctx.run()
        print(f"state {ctx.system.state.name}, {ctx.cpd.probes} probes")
    server.shutdown()
    server.server_close()


if __name__ == "__main__":
    main()
