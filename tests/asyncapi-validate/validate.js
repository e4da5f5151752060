// Validates an AsyncAPI document with the official parser (@asyncapi/parser).
// Usage: node validate.js <file>. Prints every diagnostic as JSON lines
// ({"severity": 0-3, "code", "message", "path"}; 0 is an error) and exits 1 when the
// parser found an error or could not read the document, 0 otherwise.
"use strict";
const fs = require("fs");
const { Parser } = require("@asyncapi/parser");

async function main() {
  const file = process.argv[2];
  if (!file) {
    console.error("usage: node validate.js <file>");
    process.exit(2);
  }
  const text = fs.readFileSync(file, "utf8");
  const parser = new Parser();
  const { document, diagnostics } = await parser.parse(text);
  for (const d of diagnostics) {
    console.log(JSON.stringify({ severity: d.severity, code: d.code, message: d.message, path: d.path }));
  }
  const errors = diagnostics.filter((d) => d.severity === 0);
  if (!document || errors.length > 0) {
    console.error(`${errors.length} error(s); document ${document ? "parsed" : "not parsed"}`);
    process.exit(1);
  }
  console.error(`valid AsyncAPI ${document.version()}: ${document.channels().length} channel(s), ${document.operations().length} operation(s)`);
}

main().catch((err) => {
  console.error(err && err.stack ? err.stack : String(err));
  process.exit(1);
});
