"""A local stand-in for the Hugging Face Hub (tests only): serves
/api/models/ORG/NAME/revision/REV and /ORG/NAME/resolve/SHA/FILE for one tiny
model, with Range requests, a redirect to a 'CDN' path, a gated repo (401
without the right token) and an optional dropped connection halfway."""
import json
import os
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SHA = "0123456789abcdef0123456789abcdef01234567"


class Hub:
    def __init__(self, model_dir, token="hf_secret"):
        self.files = {f: open(os.path.join(model_dir, f), "rb").read()
                      for f in sorted(os.listdir(model_dir)) if os.path.isfile(os.path.join(model_dir, f))}
        self.files["README.md"] = b"# not needed by cllm\n"
        self.token = token
        self.drop_once = set()   # file names whose first download is cut halfway
        self.log = []            # (path, Range header, Authorization header)
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def send(self, code, body=b"", ctype="application/json", extra=None):
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                hub.log.append((self.path, self.headers.get("Range"), self.headers.get("Authorization")))
                m = re.fullmatch(r"/api/models/([^/]+)/([^/]+)/revision/([^/]+)", self.path)
                if m:
                    repo = f"{m[1]}/{m[2]}"
                    if not self.allowed(repo):
                        return
                    if m[3] not in ("main", SHA):
                        return self.send(404, b'{"error": "Revision Not Found"}')
                    body = json.dumps({"id": repo, "sha": SHA,
                                       "siblings": [{"rfilename": f} for f in hub.files]}).encode()
                    return self.send(200, body)
                m = re.fullmatch(r"/([^/]+)/([^/]+)/resolve/([0-9a-f]+)/(.+)", self.path)
                if m:
                    if not self.allowed(f"{m[1]}/{m[2]}"):
                        return
                    if m[3] != SHA or m[4] not in hub.files:
                        return self.send(404, b"Entry not found", "text/plain")
                    if m[4].endswith(".safetensors"):  # large files are served from a CDN
                        return self.send(302, b"", extra={"Location": f"/cdn/{m[4]}"})
                    return self.serve(m[4])
                m = re.fullmatch(r"/cdn/(.+)", self.path)
                if m and m[1] in hub.files:
                    return self.serve(m[1])
                self.send(404, b'{"error": "Repository Not Found"}')

            def allowed(self, repo):
                if repo == "org/tiny":
                    return True
                if repo == "org/gated":
                    if self.headers.get("Authorization") == f"Bearer {hub.token}":
                        return True
                    self.send(401, b'{"error": "Access to model org/gated is restricted."}')
                    return False
                self.send(404, b'{"error": "Repository Not Found"}')
                return False

            def serve(self, name):
                data = hub.files[name]
                start, code, extra = 0, 200, {}
                r = self.headers.get("Range")
                if r:
                    start = int(re.fullmatch(r"bytes=(\d+)-", r)[1])
                    if start >= len(data):
                        return self.send(416, b"", extra={"Content-Range": f"bytes */{len(data)}"})
                    code, extra = 206, {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"}
                body = data[start:]
                if name in hub.drop_once:
                    hub.drop_once.discard(name)
                    self.send_response(code)
                    self.send_header("Content-Length", str(len(body)))
                    for k, v in extra.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                self.send(code, body, "application/octet-stream", extra)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
