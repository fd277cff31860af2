"""A lean streaming client for the chat benchmarks: raw HTTP/1.1 on asyncio, one connection per turn.

httpx costs the load generator about as much CPU per chunk as the gateway spends relaying it;
at thousands of chunks a second one client process would then measure itself. This client
parses only what the harness needs (status, the session header, the SSE events) and keeps,
per turn, the arrival time of each content chunk, its text and, for sampled turns, every
event ``(id, data)`` exactly as received, to compare with a resume from Redis.

``wave`` is one load-generator process: it runs the streams ``index, index + clients, …`` of a
wave of ``streams`` opened at an even pace over ``ramp`` seconds from the shared start
``t0`` (a ``time.perf_counter`` value: CLOCK_MONOTONIC, the same in every process).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time

BODY = json.dumps(
    {"model": "rivya-chat-plus", "messages": [{"role": "user", "content": "Count for me."}], "stream": True}
).encode()


class SSE:
    """Accumulates SSE bytes; ``feed`` returns the complete events as ``(id, data)``."""

    def __init__(self) -> None:
        self.buffer = b""

    def feed(self, data: bytes) -> list[tuple[int | None, str]]:
        self.buffer += data
        *blocks, self.buffer = self.buffer.split(b"\n\n")
        events = []
        for block in blocks:
            event_id, lines = None, []
            for line in block.decode().split("\n"):
                if line.startswith("data: "):
                    lines.append(line[6:])
                elif line.startswith("id: "):
                    event_id = int(line[4:])
            if lines:  # comments (": keep-alive") carry no data
                events.append((event_id, "\n".join(lines)))
        return events


async def read_body(reader: asyncio.StreamReader, chunked: bool):
    """Yield the response body as it arrives (chunked transfer coding or until the connection closes)."""
    while True:
        if not chunked:
            data = await reader.read(65536)
            if not data:
                return
            yield data
            continue
        size = int((await reader.readline()).split(b";")[0], 16)
        data = await reader.readexactly(size + 2)
        if size == 0:
            return
        yield data[:-2]


async def request(host: str, port: int, method: str, path: str, headers: dict, body: bytes = b""):
    """Send one request; returns (reader, writer, status, response headers)."""
    reader, writer = await asyncio.open_connection(host, port)
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    status = int((await reader.readline()).split()[1])
    response_headers = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        response_headers[name.strip().lower()] = value.strip()
    return reader, writer, status, response_headers


async def stream_turn(host: str, port: int, path: str, headers: dict, *, keep_events: bool, method: str = "POST"):
    """One streamed turn (or a resume, with ``method="GET"``): arrivals, texts, events."""
    start = time.perf_counter()
    arrivals: list[float] = []
    texts: list[str] = []
    events: list[tuple[int | None, str]] = []
    writer = None
    try:
        reader, writer, status, got = await request(
            host, port, method, path, headers, BODY if method == "POST" else b""
        )
        chunked = got.get("transfer-encoding", "").lower() == "chunked"
        if status != 200:
            body = b"".join([part async for part in read_body(reader, chunked)])
            return {"error": f"{status} {body[:200].decode(errors='replace')}"}
        parser = SSE()
        async for data in read_body(reader, chunked):
            now = time.perf_counter()
            for event in parser.feed(data):
                if keep_events:
                    events.append(event)
                if event[1] == "[DONE]":
                    continue
                payload = json.loads(event[1])
                if "error" in payload:
                    return {"error": event[1][:200]}
                for choice in payload.get("choices") or []:
                    content = choice.get("delta", {}).get("content")
                    if content:
                        arrivals.append(now)
                        texts.append(content)
    except (OSError, ValueError, IndexError, asyncio.IncompleteReadError) as error:
        return {"error": repr(error)[:200]}
    finally:
        if writer is not None:
            writer.close()
    return {
        "start": start,
        "ttft": arrivals[0] - start if arrivals else None,
        "arrivals": arrivals,
        "texts": texts,
        "events": events,
        "session": got.get("rivya-session-id"),
    }


async def wave(args: argparse.Namespace) -> list[dict]:
    host, port = args.target.rsplit(":", 1)
    path = args.path or ("/api/v1/chat/completions" if args.key else "/v1/chat/completions")
    headers = {"Authorization": f"Bearer {args.key}"} if args.key else {}
    sample_every = max(1, args.streams // max(1, args.sample)) if args.sample else 0

    async def one(index: int) -> dict:
        scheduled = args.t0 + index * args.ramp / args.streams
        await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
        keep = bool(sample_every) and index % sample_every == 0
        try:
            turn = await asyncio.wait_for(stream_turn(host, int(port), path, headers, keep_events=keep), 600)
        except TimeoutError:
            turn = {"error": "no end after 600 s"}
        turn["index"] = index
        turn["late"] = turn["start"] - scheduled if "start" in turn else None  # this client's own lag
        return turn

    indices = range(args.index, args.streams, args.clients)
    return list(await asyncio.gather(*(one(i) for i in indices)))


def main() -> None:
    import uvloop

    parser = argparse.ArgumentParser(description="one load-generator process of a chat wave")
    parser.add_argument("--target", required=True, help="host:port (the gateway, or the upstream with no --key)")
    parser.add_argument("--key", default="")
    parser.add_argument("--path", default="", help="through the gateway: another path (/bench/turn-floor)")
    parser.add_argument("--streams", type=int, required=True)
    parser.add_argument("--ramp", type=float, required=True)
    parser.add_argument("--t0", type=float, required=True)
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--sample", type=int, default=0, help="keep every event of about this many turns")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    started = time.perf_counter()
    turns = uvloop.run(wave(args))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime
    with open(args.out, "w") as sink:
        json.dump({"turns": turns, "cpu_seconds": cpu, "wall_seconds": time.perf_counter() - started}, sink)


if __name__ == "__main__":
    main()
