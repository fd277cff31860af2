/**
 * The package as a user installs it: the README's first command (`make sdk-pack` in this
 * repository) writes a tarball; its second installs that into a project made by a plain
 * `npm init` (CommonJS). From there the package works from `require` and from `import`,
 * its declarations type-check in both module systems, and the README's ESM and CommonJS
 * quick starts run as written against the test server.
 */
import { execFile, spawn } from "node:child_process";
import { once } from "node:events";
import { createServer } from "node:net";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { client, server } from "./support.js";

const run = promisify(execFile);
const pkg = fileURLToPath(new URL("..", import.meta.url));
const repository = fileURLToPath(new URL("../../..", import.meta.url));
const project = mkdtempSync(join(tmpdir(), "rivya-sdk-consumer-"));
const quiet = ["--no-audit", "--no-fund", "--loglevel=error"];
const readme = readFileSync(join(pkg, "README.md"), "utf8");
const quickStart = readme.slice(readme.indexOf("## Quick start"), readme.indexOf("## The client"));
/** The commands of the quick start's shell block, comments dropped. */
const commands = /```sh\n([\s\S]*?)```/
  .exec(quickStart)![1]!
  .split("\n")
  .map((line) => line.replace(/\s+#.*$/, "").trim())
  .filter(Boolean);
const jsBlocks = [...quickStart.matchAll(/```js\n([\s\S]*?)```/g)].map((m) => m[1]!);

afterAll(() => rmSync(project, { recursive: true, force: true }));

async function node(file: string, env: Record<string, string> = {}): Promise<string> {
  const { stdout } = await run("node", [file], { cwd: project, env: { ...process.env, ...env } });
  return stdout;
}

describe("package", () => {
  let files: string[] = [];

  beforeAll(async () => {
    // 1. The README's first command, run as written in this repository.
    expect(commands[0]).toBe("make sdk-pack");
    const { stdout } = await run("make", ["--no-print-directory", "sdk-pack"], { cwd: repository });
    const tarball = join(pkg, "rivya-sdk.tgz");
    expect(stdout).toContain(`npm install ${tarball}`);
    const listing = await run("tar", ["-tzf", tarball]);
    files = listing.stdout.trim().split("\n").map((path) => path.replace(/^package\//, ""));
    // 2. A project as `npm init` makes it: no "type", so CommonJS.
    await run("npm", ["init", "--yes", ...quiet], { cwd: project });
    // 3. The README's install command with this repository's path.
    const install = commands[1]!.replace("/path/to/rivya", repository.replace(/\/$/, ""));
    expect(install).toBe(`npm install ${tarball}`);
    await run("sh", ["-c", `${install} --offline ${quiet.join(" ")}`], { cwd: project });
  }, 300_000);

  it("ships ESM, CommonJS, their declarations and the README, nothing else", () => {
    for (const file of ["dist/index.js", "dist/index.d.ts", "dist/cjs/index.js", "dist/cjs/index.d.ts", "README.md"]) {
      expect(files).toContain(file);
    }
    expect(JSON.parse(readFileSync(join(project, "node_modules/@rivya/sdk/dist/cjs/package.json"), "utf8"))).toEqual({
      type: "commonjs",
    });
    expect(files.filter((f) => !f.startsWith("dist/") && !["README.md", "package.json"].includes(f))).toEqual([]);
    const manifest = JSON.parse(readFileSync(join(project, "node_modules/@rivya/sdk/package.json"), "utf8"));
    expect(manifest.dependencies ?? {}).toEqual({});
    const consumer = JSON.parse(readFileSync(join(project, "package.json"), "utf8"));
    expect(consumer.type ?? "commonjs").toBe("commonjs");
  });

  const probe = (load: string) => `
    ${load}
    const client = new Rivya({ apiKey: "rvya_sk_x" });
    console.log(JSON.stringify({
      same: Rivya === Named, version: VERSION, base: client.baseURL,
      resources: Object.keys(client).filter((k) => typeof client[k] === "object" && k !== "defaultHeaders"),
      errors: [typeof InsufficientCreditsError, new MaxCreditsExceededError(402, undefined, "") instanceof InsufficientCreditsError],
      verify: typeof verifyWebhook,
    }));`;
  const expected = () => ({
    same: true,
    version: JSON.parse(readFileSync(join(pkg, "package.json"), "utf8")).version,
    base: "http://127.0.0.1:8000/api/v1",
    resources: ["models", "files", "generations", "chat", "credits", "webhooks", "webhookEvents", "keys"],
    errors: ["function", false],
    verify: "function",
  });

  it("loads with import (ESM)", async () => {
    writeFileSync(
      join(project, "import.mjs"),
      probe(`import Rivya, { Rivya as Named, InsufficientCreditsError, MaxCreditsExceededError, verifyWebhook, VERSION } from "@rivya/sdk";`),
    );
    expect(JSON.parse(await node("import.mjs", { RIVYA_BASE_URL: "" }))).toEqual(expected());
  });

  it("loads with require (CommonJS) in the default npm init project", async () => {
    writeFileSync(
      join(project, "require.js"),
      probe(`const sdk = require("@rivya/sdk");
       const { Rivya, InsufficientCreditsError, MaxCreditsExceededError, verifyWebhook, VERSION } = sdk;
       const Named = sdk.default;`),
    );
    expect(JSON.parse(await node("require.js", { RIVYA_BASE_URL: "" }))).toEqual(expected());
  });

  it("type-checks TypeScript consumers of both module systems against the installed declarations", async () => {
    const body = `
       const rivya = new Rivya();
       export async function main(): Promise<void> {
         const task: Generation = await rivya.generations.create({ model: "rivya-image-1", input: { prompt: "p" } });
         const quote: GenerationQuote = await rivya.generations.create({ model: "rivya-image-1", dry_run: true });
         const stream: ChatCompletionStream = await rivya.chat.completions.create({ model: "m", messages: [], stream: true });
         const done: ChatCompletion = await rivya.chat.completions.create({ model: "m", messages: [] });
         for await (const chunk of stream) chunk.choices[0]?.delta.content?.toUpperCase();
         for await (const t of rivya.generations.list({ status: "failed" })) t.outputs.map((o) => o.url);
         const status: "queued" | "running" | "succeeded" | "failed" | "canceled" = task.status;
         const released: number = task.credits.released;
         // @ts-expect-error: not a status
         const wrong: typeof task.status = "finished";
         void [quote.price, done.usage, status, released, wrong, APIError, MaxCreditsExceededError];
       }`;
    const imports = `{ type Generation, type GenerationQuote, type ChatCompletion, ChatCompletionStream, APIError, MaxCreditsExceededError }`;
    writeFileSync(join(project, "consumer.mts"), `import Rivya, ${imports} from "@rivya/sdk";${body}`);
    writeFileSync(join(project, "consumer.cts"), `import { Rivya, ${imports.slice(1)} from "@rivya/sdk";${body}`);
    writeFileSync(
      join(project, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: { module: "NodeNext", moduleResolution: "NodeNext", target: "ES2022", strict: true, noEmit: true, types: [] },
        files: ["consumer.mts", "consumer.cts"],
      }),
    );
    const tsc = join(pkg, "node_modules/typescript/bin/tsc");
    // One run: no error, and the trace shows each consumer got its own flavour's declarations.
    const result = await run("node", [tsc, "-p", "tsconfig.json", "--traceResolution"], {
      cwd: project,
      maxBuffer: 1 << 26,
    }).catch((e) => e);
    const output: string = result.stdout ?? "";
    expect(output.split("\n").filter((line) => /error TS\d+/.test(line))).toEqual([]);
    expect(result.code ?? 0).toBe(0);
    expect(output).toMatch(/'@rivya\/sdk' was successfully resolved to '[^']*\/dist\/cjs\/index\.d\.ts'/);
    expect(output).toMatch(/'@rivya\/sdk' was successfully resolved to '[^']*\/dist\/index\.d\.ts'/);
  });

  it("runs the webhook page's Node receiver as printed: it verifies a real delivery", async () => {
    const origin = new URL(server().baseURL).origin;
    const page = await (await fetch(`${origin}/docs/webhooks`)).text();
    const printed = /<code class="language-js" data-example="node-receiver">([\s\S]*?)<\/code>/.exec(page)?.[1];
    expect(printed).toBeTruthy();
    const entities: Record<string, string> = { "&lt;": "<", "&gt;": ">", "&quot;": '"', "&#x27;": "'", "&#39;": "'", "&amp;": "&" };
    writeFileSync(join(project, "receiver.mjs"), printed!.replace(/&(lt|gt|quot|#x27|#39|amp);/g, (e) => entities[e]!));
    const probe = createServer().listen(0, "127.0.0.1");
    await once(probe, "listening");
    const port = (probe.address() as { port: number }).port;
    probe.close();
    const rivya = client();
    const endpoint = await rivya.webhooks.create({ url: `http://127.0.0.1:${port}/`, event_types: ["*"] });
    const receiver = spawn("node", ["receiver.mjs"], {
      cwd: project,
      env: { ...process.env, RIVYA_WEBHOOK_SECRET: endpoint.secret, PORT: String(port) },
    });
    let output = "";
    receiver.stdout.on("data", (data) => (output += data));
    receiver.stderr.on("data", (data) => (output += data));
    try {
      for (let i = 0; i < 100 && !(await fetch(`http://127.0.0.1:${port}/`, { method: "POST" }).catch(() => null)); i++) {
        await new Promise((r) => setTimeout(r, 100));
      }
      // Unsigned: refused.
      expect((await fetch(`http://127.0.0.1:${port}/`, { method: "POST", body: "{}" })).status).toBe(400);
      const event = await rivya.webhooks.test(endpoint.id);
      for (let i = 0; i < 300 && !output.includes(`verified webhook.test ${event.id}`); i++) {
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(output.trim()).toBe(`verified webhook.test ${event.id}`);
    } finally {
      receiver.kill();
      // The account is every test's: later events must not queue retries to a receiver that is gone.
      await rivya.webhooks.delete(endpoint.id);
    }
  });

  it("runs the README quick starts (ESM and CommonJS) as written", async () => {
    expect(jsBlocks).toHaveLength(2);
    const [esm, cjs] = jsBlocks as [string, string];
    expect(esm.trim().split("\n").length).toBeLessThanOrEqual(10);
    expect(cjs).toContain('require("@rivya/sdk")');
    writeFileSync(join(project, "quickstart.mjs"), esm);
    writeFileSync(join(project, "quickstart.cjs"), cjs);
    const { baseURL, apiKey } = server();
    const env = { RIVYA_API_KEY: apiKey, RIVYA_BASE_URL: baseURL };
    const lines = (await node("quickstart.mjs", env)).trim().split("\n");
    expect(lines[0]).toMatch(/^task_\S+ is (queued|running|succeeded), \d+ credits reserved$/);
    expect(lines[1]).toMatch(/^succeeded: http:\/\/\S+\/api\/v1\/files\/file_\S+\/content\?/);
    expect(lines).toContain("rivya-image-1 (image)");
    expect((await node("quickstart.cjs", env)).trim()).toMatch(/^succeeded: http:\/\/\S+\/api\/v1\/files\/file_\S+\/content\?/);
  });
});
