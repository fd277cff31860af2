#!/usr/bin/env node
// Measures what an application ships when it imports @rivya/sdk: dist/ bundled into one
// minified ESM file (esbuild, node builtins external), gzipped. Fails above the budget.
//
//   npm run build && npm run size
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { build } from "esbuild";

const BUDGET = 12_000; // bytes, gzipped (issue 12: at most 12 kB)
const pkg = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const dist = join(pkg, "dist");

const result = await build({
  entryPoints: [join(dist, "index.js")],
  bundle: true,
  minify: true,
  format: "esm",
  platform: "node",
  target: "node20",
  write: false,
  logLevel: "silent",
});
const bundle = result.outputFiles[0].contents;
const gzipped = gzipSync(bundle, { level: 9 }).length;

let js = 0;
let dts = 0;
const walk = (dir) => {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) walk(path);
    else if (name.endsWith(".d.ts")) dts += statSync(path).size;
    else if (name.endsWith(".js")) js += readFileSync(path).length;
  }
};
walk(dist);

const kb = (n) => `${(n / 1000).toFixed(1)} kB`;
console.log(
  `size: bundle ${kb(bundle.length)} minified, ${kb(gzipped)} gzipped (budget ${kb(BUDGET)}); ` +
    `dist: ${kb(js)} of JavaScript, ${kb(dts)} of declarations; runtime dependencies: 0`,
);
const manifest = JSON.parse(readFileSync(join(pkg, "package.json"), "utf8"));
if (Object.keys(manifest.dependencies ?? {}).length) {
  console.error("size: @rivya/sdk must have no runtime dependencies");
  process.exit(1);
}
if (gzipped > BUDGET) {
  console.error(`size: ${gzipped} bytes gzipped is over the ${BUDGET}-byte budget`);
  process.exit(1);
}
