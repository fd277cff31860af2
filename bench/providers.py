"""Time per default job of each provider: ``{"prompt": ...}`` alone, as the catalog runs it.

    .venv/bin/python bench/providers.py [--repeats 3]

Local providers run in-process; the OpenAI-Images adapter runs against a
stand-in upstream on 127.0.0.1 that answers at once, so its figure is the
adapter's own overhead (request, base64 decoding, image verification).
The target for every local provider is under 10 s per default job on a
2-core machine.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import statistics
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PIL import Image  # noqa: E402

from rivya_api.generations.providers.local import (  # noqa: E402
    LocalAudioProvider,
    LocalImageProvider,
    LocalVideoProvider,
    video_codec,
)
from rivya_api.generations.providers.openai_images import OpenAIImagesProvider  # noqa: E402

PROMPT = "A lighthouse on a cliff at night, waves breaking below, the beam sweeping through rain."


def upstream_server() -> ThreadingHTTPServer:
    buffer = io.BytesIO()
    Image.new("RGB", (1024, 1024), (40, 80, 160)).save(buffer, format="PNG")
    body = json.dumps({"data": [{"b64_json": base64.b64encode(buffer.getvalue()).decode()}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    server = upstream_server()
    os.environ["RIVYA_BENCH_IMAGES_BASE_URL"] = f"http://127.0.0.1:{server.server_address[1]}/v1"
    os.environ["RIVYA_BENCH_IMAGES_API_KEY"] = "bench"
    upstream = {"base_url_env": "RIVYA_BENCH_IMAGES_BASE_URL", "api_key_env": "RIVYA_BENCH_IMAGES_API_KEY"}
    audio = LocalAudioProvider({})
    cases = [
        ("LocalImageProvider (512x512 PNG)", LocalImageProvider({})),
        (f"LocalAudioProvider ({audio.engine()}, WAV)", audio),
        ("LocalAudioProvider (synth, WAV)", LocalAudioProvider({"engine": "synth"})),
        (f"LocalVideoProvider (640x360, 48 frames, {video_codec()[0]})", LocalVideoProvider({})),
        ("OpenAIImagesProvider (stand-in, 1024x1024)", OpenAIImagesProvider(upstream)),
    ]
    print(f"{os.cpu_count()} CPUs; {args.repeats} runs each; prompt of {len(PROMPT)} characters")
    print(f"{'provider':<52} {'median s':>9} {'max s':>7} {'output':>12}")
    for name, provider in cases:
        times = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            outputs = provider.run(input={"prompt": PROMPT})
            times.append(time.perf_counter() - started)
        size = sum(len(output.data) for output in outputs)
        print(f"{name:<52} {statistics.median(times):>9.3f} {max(times):>7.3f} {size:>10,} B")
    # The largest jobs the default schemas allow, to size the catalog's time limits.
    largest = [
        ("LocalImageProvider 1024x1024", LocalImageProvider({}), {"width": 1024, "height": 1024}),
        ("LocalAudioProvider 2000 characters", audio, {"prompt": (PROMPT + " ") * 22}),
        (
            "LocalVideoProvider 1280x720, 10 s at 30 fps",
            LocalVideoProvider({}),
            {"width": 1280, "height": 720, "duration": 10, "fps": 30},
        ),
    ]
    print("\nlargest jobs the default schemas allow (one run each)")
    for name, provider, extra in largest:
        job = {"prompt": PROMPT, **extra}
        job["prompt"] = job["prompt"][:2000]
        started = time.perf_counter()
        outputs = provider.run(input=job)
        elapsed = time.perf_counter() - started
        print(f"{name:<52} {elapsed:>9.3f} {'':>7} {sum(len(o.data) for o in outputs):>10,} B")
    server.shutdown()


if __name__ == "__main__":
    main()
