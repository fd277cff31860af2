/**
 * The published shape: `npm pack` makes a tarball that installs into an empty project, whose
 * ESM import and type declarations work, and the README's quick start runs as written
 * against the test server.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { server } from "./support.js";

const run = promisify(execFile);
const pkg = fileURLToPath(new URL("..", import.meta.url));
const project = mkdtempSync(join(tmpdir(), "rivya-sdk-consumer-"));
const npm = (args: string[], cwd: string) => run("npm", [...args, "--no-audit", "--no-fund", "--loglevel=error"], { cwd });

afterAll(() => rmSync(project, { recursive: true, force: true }));

describe("package", () => {
  let files: string[] = [];

  beforeAll(async () => {
    const { stdout } = await npm(["pack", "--json", "--pack-destination", project], pkg);
    const [packed] = JSON.parse(stdout.slice(stdout.indexOf("[")));
    files = packed.files.map((f: { path: string }) => f.path);
    writeFileSync(join(project, "package.json"), JSON.stringify({ name: "consumer", private: true, type: "module" }));
    await npm(["install", "--offline", join(project, packed.filename)], project);
  }, 180_000);

  it("ships dist (ESM and declarations) and the README, nothing else", () => {
    expect(files).toContain("dist/index.js");
    expect(files).toContain("dist/index.d.ts");
    expect(files).toContain("README.md");
    expect(files.filter((f) => !f.startsWith("dist/") && !["README.md", "package.json"].includes(f))).toEqual([]);
    const manifest = JSON.parse(readFileSync(join(project, "node_modules/@rivya/sdk/package.json"), "utf8"));
    expect(manifest.dependencies ?? {}).toEqual({});
  });

  it("imports from the installed tarball", async () => {
    const script = `
      import Rivya, { Rivya as Named, InsufficientCreditsError, verifyWebhook, VERSION } from "@rivya/sdk";
      const client = new Rivya({ apiKey: "rvya_sk_x" });
      console.log(JSON.stringify({
        same: Rivya === Named, version: VERSION, base: client.baseURL,
        resources: Object.keys(client).filter((k) => typeof client[k] === "object" && k !== "defaultHeaders"),
        errors: typeof InsufficientCreditsError, verify: typeof verifyWebhook,
      }));`;
    writeFileSync(join(project, "import.mjs"), script);
    const { stdout } = await run("node", ["import.mjs"], { cwd: project, env: { ...process.env, RIVYA_BASE_URL: "" } });
    expect(JSON.parse(stdout)).toEqual({
      same: true,
      version: JSON.parse(readFileSync(join(pkg, "package.json"), "utf8")).version,
      base: "http://127.0.0.1:8000/api/v1",
      resources: ["models", "files", "generations", "chat", "credits", "webhooks", "webhookEvents"],
      errors: "function",
      verify: "function",
    });
  });

  it("type-checks a TypeScript consumer against the installed declarations", async () => {
    writeFileSync(
      join(project, "consumer.ts"),
      `import Rivya, { type Generation, type GenerationQuote, type ChatCompletion, ChatCompletionStream, APIError } from "@rivya/sdk";
       const rivya = new Rivya();
       export async function main(): Promise<void> {
         const task: Generation = await rivya.generations.create({ model: "rivya-image-1", input: { prompt: "p" } });
         const quote: GenerationQuote = await rivya.generations.create({ model: "rivya-image-1", dry_run: true });
         const stream: ChatCompletionStream = await rivya.chat.completions.create({ model: "m", messages: [], stream: true });
         const done: ChatCompletion = await rivya.chat.completions.create({ model: "m", messages: [] });
         for await (const chunk of stream) chunk.choices[0]?.delta.content?.toUpperCase();
         for await (const t of rivya.generations.list({ status: "failed" })) t.outputs.map((o) => o.url);
         const status: "queued" | "running" | "succeeded" | "failed" | "canceled" = task.status;
         // @ts-expect-error: not a status
         const wrong: typeof task.status = "finished";
         void [quote.price, done.usage, status, wrong, APIError];
       }`,
    );
    writeFileSync(
      join(project, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: { module: "NodeNext", moduleResolution: "NodeNext", target: "ES2022", strict: true, noEmit: true, types: [] },
        files: ["consumer.ts"],
      }),
    );
    const tsc = join(pkg, "node_modules/typescript/bin/tsc");
    const result = await run("node", [tsc, "-p", "tsconfig.json"], { cwd: project }).catch((e) => e);
    expect(result.stdout ?? "").toBe("");
  });

  it("runs the README quick start as written", async () => {
    const readme = readFileSync(join(pkg, "README.md"), "utf8");
    const section = readme.slice(readme.indexOf("## Quick start"));
    const code = /```js\n([\s\S]*?)```/.exec(section)![1]!;
    expect(code.trim().split("\n").length).toBeLessThanOrEqual(10);
    writeFileSync(join(project, "quickstart.mjs"), code);
    const { baseURL, apiKey } = server();
    const { stdout } = await run("node", ["quickstart.mjs"], {
      cwd: project,
      env: { ...process.env, RIVYA_API_KEY: apiKey, RIVYA_BASE_URL: baseURL },
    });
    const lines = stdout.trim().split("\n");
    expect(lines[0]).toMatch(/^task_\S+ is (queued|running|succeeded), \d+ credits reserved$/);
    expect(lines[1]).toMatch(/^succeeded: http:\/\/\S+\/api\/v1\/files\/file_\S+\/content\?/);
    expect(lines).toContain("rivya-image-1 (image)");
  });
});
