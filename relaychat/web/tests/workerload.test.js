// The worker loader: only bytes matching the import map's hashes are linked,
// every import is rewritten to a verified module, and the linked graph runs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { IntegrityError, imports, integrityTable, link, sri, verifiedGraph } from '../static/workerload.js';

const STATIC = new URL('../static/', import.meta.url);
const page = readFileSync(new URL('index.html', STATIC), 'utf8');
const importMap = JSON.parse(page.match(/<script type="importmap">(.*?)<\/script>/s)[1]);
const table = integrityTable(importMap, STATIC.href);
const fromDisk = (changes = {}) => async (url) => {
  const name = url.slice(STATIC.href.length);
  return name in changes ? new TextEncoder().encode(changes[name]) : new Uint8Array(readFileSync(new URL(url)));
};
const dataUrl = (text) => `data:text/javascript;base64,${Buffer.from(text).toString('base64')}`;

test('sri is the SRI form of SHA-384, as the page lists it', async () => {
  assert.equal(await sri(readFileSync(new URL('worker.js', STATIC))), importMap.integrity['./worker.js']);
  // the published SRI example value for "alert('Hello, world.');"
  assert.equal(await sri(new TextEncoder().encode("alert('Hello, world.');")),
    'sha384-H8BRh8j48O9oYatfu5AZzq6A9RINhZO5H16dQZngK7T62em8MUt1FLm52t+eX6xO');
});

test('the worker graph is verified, linked and runs with every import rewritten', async () => {
  const graph = await verifiedGraph(new URL('pow.js', STATIC).href, table, fromDisk());
  const names = graph.map((m) => m.url.slice(STATIC.href.length));
  assert.equal(names.at(-1), 'pow.js');
  assert.ok(names.includes('vendor/node_modules/@noble/hashes/sha2.js'));
  for (const m of graph) for (const d of m.deps) assert.ok(names.indexOf(d.slice(STATIC.href.length)) < names.indexOf(m.url.slice(STATIC.href.length)));
  const sources = [];
  const top = link(graph, (text) => (sources.push(text), dataUrl(text)));
  for (const text of sources) assert.deepEqual(imports(text), []); // nothing relative is left to resolve
  const { solvePow, powOk } = await import(top);
  const challenge = new Uint8Array(16).fill(7);
  assert.ok(powOk(challenge, solvePow(challenge, 8), 8));
});

test('the whole worker graph, entry included, has hashes in the page', async () => {
  const graph = await verifiedGraph(new URL('worker.js', STATIC).href, table, fromDisk());
  assert.deepEqual(graph.map((m) => m.url.slice(STATIC.href.length)).sort(), [
    'bytes.js', 'pow.js', 'smp.js', 'smprun.js', 'vendor/node_modules/@noble/hashes/_md.js',
    'vendor/node_modules/@noble/hashes/_u64.js', 'vendor/node_modules/@noble/hashes/sha2.js',
    'vendor/node_modules/@noble/hashes/utils.js', 'worker.js']);
});

test('a changed file anywhere in the graph, or one without a hash, is refused before anything is linked', async () => {
  for (const name of ['worker.js', 'smp.js', 'vendor/node_modules/@noble/hashes/_u64.js']) {
    const original = readFileSync(new URL(name, STATIC), 'utf8');
    await assert.rejects(verifiedGraph(new URL('worker.js', STATIC).href, table, fromDisk({ [name]: `${original}\n;globalThis.ran = 1;` })),
      (e) => e instanceof IntegrityError && e.message.includes(name));
  }
  const partial = new Map([...table].filter(([url]) => !url.endsWith('/bytes.js')));
  await assert.rejects(verifiedGraph(new URL('worker.js', STATIC).href, partial, fromDisk()), /no integrity hash for .*bytes\.js/);
});

test('every import form is found; an import that escaped rewriting cannot resolve', () => {
  assert.deepEqual(imports(`import { a, b as c } from './x.js';\nimport * as u from "../y.js";\nimport './z.js';\n` +
    `export { q } from './w.js';\nexport * from "./v.js";\n// import maps do not apply (in comments)\nconst s = 'import';`),
  ['./x.js', '../y.js', './z.js', './w.js', './v.js']);
  assert.throws(() => new URL('./x.js', 'blob:http://127.0.0.1/0b7e4a2c-0000-4000-8000-000000000000'), TypeError);
});

test('an import cycle is refused rather than linked half-way', async () => {
  const base = 'http://origin/';
  const files = { 'a.js': "import './b.js';", 'b.js': "import './a.js';" };
  const hashes = new Map();
  for (const [name, text] of Object.entries(files)) hashes.set(base + name, await sri(new TextEncoder().encode(text)));
  await assert.rejects(verifiedGraph(`${base}a.js`, hashes, async (url) => new TextEncoder().encode(files[url.slice(base.length)])),
    /import cycle/);
});
