// build.mjs - makes dist/wsgw.min.js (esbuild, minified ES module) and prints
// its size raw and gzipped (the figures README.md states; --check-readme
// fails when it states others).
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

// --check-readme (tests/run.sh): README.md must state these very figures.
if (process.argv.includes("--check-readme")) {
  const fmt = (n) => n.toLocaleString("en-US");
  const want = `**${fmt(code.length)} bytes minified, ${fmt(gz.length)} bytes gzipped**`;
  if (!readFileSync(join(root, "README.md"), "utf8").includes(want)) {
    console.error(`README.md does not state the size: expected "${want}"`);
    process.exit(1);
  }
}
