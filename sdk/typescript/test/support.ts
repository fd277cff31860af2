/**
 * Test helpers: clients for the server the global setup started, a skip for endpoints the
 * server does not have yet, a PNG maker, and real local HTTP servers (a scripted stub for
 * the client's retry rules, a fault-injecting proxy in front of Rivya, a webhook receiver).
 */
import { once } from "node:events";
import { type IncomingMessage, type Server, type ServerResponse, createServer, request } from "node:http";
import type { AddressInfo } from "node:net";
import { deflateSync } from "node:zlib";
import { inject } from "vitest";
import { Rivya } from "../src/index.js";
import type { ClientOptions } from "../src/index.js";

export const server = () => inject("rivya");

export function client(options: ClientOptions = {}): Rivya {
  const { baseURL, apiKey } = server();
  return new Rivya({ baseURL, apiKey, ...options });
}

/** Skips the running test, naming the missing operation, when the server's document lacks it. */
export function requireOperation(ctx: { skip: (condition: boolean, note?: string) => void }, operation: string): void {
  // Path parameters match whatever the server calls them ({id}, {session_id} …).
  const shape = (op: string) => op.replace(/\{[^}]*\}/g, "{}");
  const present = server().operations.some((op) => shape(op) === shape(operation));
  ctx.skip(!present, `${operation} is not on this server yet`);
}

async function listen(srv: Server): Promise<string> {
  srv.listen(0, "127.0.0.1");
  await once(srv, "listening");
  return `http://127.0.0.1:${(srv.address() as AddressInfo).port}`;
}

export interface Recorded {
  method: string;
  url: string;
  headers: IncomingMessage["headers"];
  body: Buffer;
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of req) parts.push(part as Buffer);
  return Buffer.concat(parts);
}

/**
 * A local HTTP server answering from a script: each request takes the next handler
 * (the last one repeats). Records every request.
 */
export async function stubServer(
  ...script: ((req: IncomingMessage, res: ServerResponse) => void | Promise<void>)[]
): Promise<{ url: string; requests: Recorded[]; close: () => Promise<void> }> {
  const requests: Recorded[] = [];
  const srv = createServer(async (req, res) => {
    const body = await readBody(req);
    requests.push({ method: req.method!, url: req.url!, headers: req.headers, body });
    const handler = script[Math.min(requests.length - 1, script.length - 1)]!;
    await handler(req, res);
  });
  const url = await listen(srv);
  return {
    url,
    requests,
    close: async () => {
      srv.closeAllConnections();
      srv.close();
    },
  };
}

export const json =
  (status: number, body: unknown, headers: Record<string, string> = {}) =>
  (_req: IncomingMessage, res: ServerResponse) => {
    res.writeHead(status, { "content-type": "application/json", ...headers });
    res.end(JSON.stringify(body));
  };

export const apiError = (status: number, code: string, headers: Record<string, string> = {}) =>
  json(
    status,
    { error: { type: "api_error", code, message: `${code} happened`, param: "p", request_id: "req_stub" } },
    { "x-request-id": "req_stub", ...headers },
  );

/** Closes the connection without answering (a network error for the client). */
export const hangUp = (req: IncomingMessage) => {
  req.socket.destroy();
};

export type ProxyAction =
  /** Forward untouched. */
  | "pass"
  /** Forward, let the server finish, then drop the connection without passing its answer on. */
  | "lose-response"
  /** Forward the response's head and its first `n` server-sent events, then drop the connection. */
  | { dropAfterEvents: number };

/**
 * A proxy in front of the Rivya server that can lose answers or cut streams, so the client
 * meets real dropped connections. `decide` picks the action per request.
 */
export async function faultyProxy(
  target: string,
  decide: (req: Recorded, index: number) => ProxyAction,
): Promise<{ url: string; requests: Recorded[]; close: () => Promise<void> }> {
  const requests: Recorded[] = [];
  const upstream = new URL(target);
  const srv = createServer(async (req, res) => {
    const body = await readBody(req);
    const recorded = { method: req.method!, url: req.url!, headers: req.headers, body };
    requests.push(recorded);
    const action = decide(recorded, requests.length - 1);
    const forward = request({
      host: upstream.hostname,
      port: upstream.port,
      method: req.method,
      path: req.url,
      headers: { ...req.headers, host: upstream.host },
    });
    forward.end(body);
    const [answer] = (await once(forward, "response")) as [IncomingMessage];
    if (action === "lose-response") {
      await readBody(answer);
      req.socket.destroy();
      return;
    }
    res.writeHead(answer.statusCode!, answer.headers);
    if (action === "pass") {
      answer.pipe(res);
      return;
    }
    let text = "";
    let cut = false;
    answer.on("data", (part: Buffer) => {
      if (cut) return;
      text += part.toString();
      const events = text.split(/\r?\n\r?\n/);
      if (events.length - 1 >= action.dropAfterEvents) {
        cut = true;
        res.write(`${events.slice(0, action.dropAfterEvents).join("\n\n")}\n\n`);
        answer.destroy();
        // Flush what was written, then cut the connection mid-response.
        setTimeout(() => res.socket?.destroy(), 50);
      }
    });
  });
  const url = await listen(srv);
  return {
    url,
    requests,
    close: async () => {
      srv.closeAllConnections();
      srv.close();
    },
  };
}

/** A webhook receiver: answers 200 and hands over each delivery with its raw body. */
export async function webhookReceiver(): Promise<{
  url: string;
  next: () => Promise<Recorded>;
  close: () => Promise<void>;
}> {
  const received: Recorded[] = [];
  const waiting: ((r: Recorded) => void)[] = [];
  const srv = createServer(async (req, res) => {
    const body = await readBody(req);
    res.writeHead(200).end("ok");
    const delivery = { method: req.method!, url: req.url!, headers: req.headers, body };
    const waiter = waiting.shift();
    if (waiter) waiter(delivery);
    else received.push(delivery);
  });
  const url = await listen(srv);
  return {
    url,
    next: () => {
      const ready = received.shift();
      return ready ? Promise.resolve(ready) : new Promise((resolve) => waiting.push(resolve));
    },
    close: async () => {
      srv.closeAllConnections();
      srv.close();
    },
  };
}

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes: Buffer): number {
  let c = 0xffffffff;
  for (const byte of bytes) c = CRC_TABLE[(c ^ byte) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Buffer): Buffer {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, "ascii"), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([length, body, crc]);
}

/** A real RGB PNG of `width`×`height` (a gradient), made here so the tests need no fixture files. */
export function png(width = 32, height = 24): Buffer {
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header.set([8, 2, 0, 0, 0], 8); // 8-bit RGB, no interlace
  const rows = Buffer.alloc((width * 3 + 1) * height);
  for (let y = 0; y < height; y++) {
    const row = y * (width * 3 + 1);
    for (let x = 0; x < width; x++) rows.set([(x * 255) / width, (y * 255) / height, 128], row + 1 + x * 3);
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", header),
    chunk("IDAT", deflateSync(rows)),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}
