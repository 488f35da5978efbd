// Parse every ```mermaid block of the given Markdown (or insta snapshot) files with Mermaid's
// own parser, the one GitHub's renderer runs. Mermaid expects a browser, so jsdom stands in
// for one; nothing is drawn. Prints one line per diagram; exits 1 if any does not parse, 2 if
// the files held no diagram at all.
import fs from 'node:fs';
import { JSDOM } from 'jsdom';

const dom = new JSDOM('<!doctype html><html><body></body></html>');
globalThis.window = dom.window;
globalThis.document = dom.window.document;
globalThis.DOMParser = dom.window.DOMParser;
const { default: mermaid } = await import('mermaid');
mermaid.initialize({ startOnLoad: false });

let seen = 0;
let bad = 0;
for (const file of process.argv.slice(2)) {
  const text = fs.readFileSync(file, 'utf8');
  for (const [, diagram] of text.matchAll(/```mermaid\n([\s\S]*?)```/g)) {
    seen++;
    try {
      const parsed = await mermaid.parse(diagram);
      console.log(`ok ${parsed.diagramType} ${file}`);
    } catch (e) {
      bad++;
      console.log(`FAIL ${file}: ${String(e.message || e).split('\n').slice(0, 4).join(' | ')}`);
    }
  }
}
process.exit(bad ? 1 : seen ? 0 : 2);
