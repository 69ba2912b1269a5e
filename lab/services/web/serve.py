#!/usr/bin/env python3
"""Static / legacy container stand-in for the lab.

One small server for parking-website, parking-kuando-ui, parking-device-manager,
parking-adminer, parking-filebrowser, parking-gateway-bridge and parking-contact-api.

Environment:
  PORT              port to listen on (80)
  SERVICE_NAME      name shown in the page (e.g. parking-website)
  HEALTH_PATH       health endpoint (/health)
  MODE              static    -> HEALTH_PATH 200 "ok" (the page if it is "/"), every other
                                 GET/HEAD 200 small HTML page, other methods 405
                    unhealthy -> HEALTH_PATH 503, everything else 200 (parking-contact-api is
                                 unhealthy by design, as in production)
  PROXY_API_PREFIX  optional path prefix to proxy (e.g. /api/), as kuando-ui's nginx does
  PROXY_API_TARGET  optional target URL for that prefix (e.g. http://api:8000/api/)
  BIND              address to listen on (0.0.0.0), LOG_LEVEL (INFO)
"""
import html
import http.client
import logging
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

LOG = logging.getLogger("web")

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
              "trailers", "transfer-encoding", "upgrade", "host", "content-length"}
PROXY_TIMEOUT = 30


class Config:
    def __init__(self, env):
        self.service_name = env.get("SERVICE_NAME", "parking-static")
        self.health_path = env.get("HEALTH_PATH", "/health")
        self.mode = env.get("MODE", "static").strip().lower()
        if self.mode not in ("static", "unhealthy"):
            raise ValueError("MODE must be 'static' or 'unhealthy', not %r" % self.mode)
        self.proxy_prefix = env.get("PROXY_API_PREFIX") or ""
        self.proxy_target = env.get("PROXY_API_TARGET") or ""
        if bool(self.proxy_prefix) != bool(self.proxy_target):
            raise ValueError("set both PROXY_API_PREFIX and PROXY_API_TARGET, or neither")

    def page(self):
        name = html.escape(self.service_name)
        return ("<!DOCTYPE html><html><head><title>%s</title></head>"
                "<body><h1>%s</h1><p>Lab stand-in.</p></body></html>\n" % (name, name)).encode()

    def proxy_url(self, path):
        """Map ``/api/x?y`` to ``http://api:8000/api/x?y`` (nginx ``proxy_pass`` with a URI)."""
        if not self.proxy_prefix or not path.startswith(self.proxy_prefix):
            return None
        return self.proxy_target + path[len(self.proxy_prefix):]


class Handler(BaseHTTPRequestHandler):
    server_version = "parking-lab-web"
    timeout = 30
    config = None  # set in main()

    def _reply(self, status, body, content_type="text/html; charset=utf-8", headers=()):
        try:
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass
        return status

    def _proxy(self, url):
        parts = urlsplit(url)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["X-Forwarded-For"] = self.client_address[0]
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=PROXY_TIMEOUT)
        try:
            conn.request(self.command, (parts.path or "/") + ("?" + parts.query if parts.query else ""),
                         body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
            passed = [(k, v) for k, v in response.getheaders()
                      if k.lower() not in HOP_BY_HOP and k.lower() != "content-type"]
            return self._reply(response.status, data,
                               response.getheader("Content-Type", "application/octet-stream"), passed)
        except (OSError, http.client.HTTPException) as exc:
            LOG.warning("proxy to %s failed: %s", url, exc)
            return self._reply(502, b"bad gateway\n", "text/plain")
        finally:
            conn.close()

    def _handle(self):
        started = time.monotonic()
        config = self.config
        path = urlsplit(self.path).path
        proxy_url = config.proxy_url(self.path)
        if proxy_url:
            status = self._proxy(proxy_url)
        elif path == config.health_path and config.mode == "unhealthy":
            status = self._reply(503, b"unhealthy\n", "text/plain")
        elif path == config.health_path and path != "/":
            status = self._reply(200, b"ok\n", "text/plain")
        elif self.command in ("GET", "HEAD") or config.mode == "unhealthy":
            status = self._reply(200, config.page())
        else:
            status = self._reply(405, b"method not allowed\n", "text/plain")
        LOG.info("%s %s %d %.1fms", self.command, path, status, (time.monotonic() - started) * 1000)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _handle

    def log_message(self, fmt, *args):  # the access line is written by _handle
        pass


def main():
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO").upper(), stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        Handler.config = Config(os.environ)
    except ValueError as exc:
        LOG.error("%s", exc)
        return 2
    port = int(os.environ.get("PORT", "80"))
    server = ThreadingHTTPServer((os.environ.get("BIND", "0.0.0.0"), port), Handler)
    server.daemon_threads = True

    def stop(signum, frame):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    LOG.info("%s (%s) listening on port %d", Handler.config.service_name, Handler.config.mode, port)
    server.serve_forever(poll_interval=0.2)
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
