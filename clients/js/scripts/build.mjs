// build.mjs - makes dist/wsgw.min.js (esbuild, minified ES module) and prints
// its size raw and gzipped (the figures README.md states).
//
// Owns: the minified build. Must not: bundle anything but src/wsgw.js (the
// SDK has no runtime dependencies) or change what the module exports.

import { build } from "esbuild";
import { mkdirSync, readFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const out = join(root, "dist", "wsgw.min.js");
mkdirSync(dirname(out), { recursive: true });

await build({
  entryPoints: [join(root, "src", "wsgw.js")],
  outfile: out,
  bundle: false,
  format: "esm",
  minify: true,
  target: ["es2020", "node18"],
  legalComments: "none",
  logLevel: "warning",
});

const code = readFileSync(out);
const gz = gzipSync(code, { level: 9 });
console.log(`dist/wsgw.min.js: ${code.length} bytes, ${gz.length} bytes gzipped`);
