#!/usr/bin/env node
// Builds dist/ for both module systems from one source:
//   dist/*.js, *.d.ts        ESM (`import`), tsconfig.json
//   dist/cjs/*.js, *.d.ts    CommonJS (`require`), tsconfig.cjs.json; dist/cjs/package.json
//                            says "commonjs", so Node and TypeScript read that folder as CJS
// package.json's "exports" sends each module system to its own folder.
import { execFileSync } from "node:child_process";
import { rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const pkg = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");

rmSync(join(pkg, "dist"), { recursive: true, force: true });
for (const config of ["tsconfig.json", "tsconfig.cjs.json"]) {
  execFileSync(process.execPath, [tsc, "-p", config], { cwd: pkg, stdio: "inherit" });
}
writeFileSync(join(pkg, "dist/cjs/package.json"), `${JSON.stringify({ type: "commonjs" })}\n`);
