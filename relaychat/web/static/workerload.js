// Starts the page's Web Worker only from integrity-checked code.
//
// Import maps (and so their "integrity" entries) do not apply inside a
// worker, and `new Worker(url)` takes no integrity: a worker started from
// its URL would run whatever the server sent. So the page fetches the
// worker's modules itself, each checked against the SHA-384 the page's
// import map lists for it (the fetch's `integrity`, enforced by the
// browser, and again with WebCrypto here, so node tests exercise the same
// check), then makes each one a blob: URL, leaves first, with every
// relative import rewritten to its dependency's blob: URL. Only those
// verified bytes ever run: a module whose hash is missing or differs
// stops the worker before any of its code exists as a script, and an
// import the rewriting missed cannot load either (a relative specifier
// does not resolve against a blob: URL), so a mistake fails closed.
// No DOM: node tests link the same graph with data: URLs.

const SPECIFIER = /(\bimport\s*(?:[\w$*{}\s,]*?\bfrom\s*)?|\bexport\s*[\w$*{}\s,]*?\bfrom\s*)(['"])(\.{1,2}\/[^'"\n]+)\2/g;

export class IntegrityError extends Error {}

/** `sha384-...` of bytes (SRI's form), with WebCrypto. */
export async function sri(bytes) {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-384', bytes));
  let text = '';
  for (const b of digest) text += String.fromCharCode(b);
  return `sha384-${btoa(text)}`;
}

/** Absolute URL -> SRI, from an import map's "integrity" (keys resolved against `base`). */
export function integrityTable(importMap, base) {
  const table = new Map();
  for (const [key, value] of Object.entries(importMap?.integrity ?? {})) table.set(new URL(key, base).href, value);
  return table;
}

/** The relative specifiers a module imports (static `import ... from`, `export ... from`, bare `import '...'`). */
export function imports(source) {
  return [...source.matchAll(SPECIFIER)].map((m) => m[3]);
}

/**
 * Every module of the graph from `entry`, verified: [{url, source, deps}]
 * with each module after all it imports. `fetchBytes(url, integrity)` gives
 * a Uint8Array. Throws IntegrityError for a module with no hash or another
 * hash, and for an import cycle (the worker has none; linking needs none).
 */
export async function verifiedGraph(entry, table, fetchBytes) {
  const order = [];
  const state = new Map(); // url -> 'loading' | 'done'
  async function visit(url) {
    if (state.get(url) === 'done') return;
    if (state.get(url) === 'loading') throw new IntegrityError(`import cycle at ${url}`);
    state.set(url, 'loading');
    const expected = table.get(url);
    if (!expected) throw new IntegrityError(`no integrity hash for ${url}`);
    const bytes = await fetchBytes(url, expected);
    if ((await sri(bytes)) !== expected) throw new IntegrityError(`${url} does not match its integrity hash`);
    const source = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    const deps = imports(source).map((s) => new URL(s, url).href);
    for (const dep of deps) await visit(dep);
    order.push({ url, source, deps });
    state.set(url, 'done');
  }
  await visit(new URL(entry).href);
  return order;
}

/** The entry's linked URL: each module made a URL by `makeUrl(source)`, its imports pointing at its dependencies' URLs. */
export function link(graph, makeUrl) {
  const linked = new Map();
  for (const { url, source } of graph) {
    const text = source.replace(SPECIFIER, (whole, head, quote, spec) => {
      const target = linked.get(new URL(spec, url).href);
      if (target === undefined) throw new IntegrityError(`${url} imports ${spec}, which was not verified`);
      return `${head}${quote}${target}${quote}`;
    });
    linked.set(url, makeUrl(text));
  }
  return linked.get(graph[graph.length - 1].url);
}

/**
 * A module Worker running `entry` and its imports, all checked against the
 * page's import map. Resolves once the worker's code has started (it posts
 * {ready: true} first); rejects with IntegrityError if any file differs.
 */
export async function startVerifiedWorker(entry, importMap, base) {
  const table = integrityTable(importMap, base);
  const fetchBytes = async (url, integrity) => {
    const response = await fetch(url, { integrity, cache: 'no-cache', credentials: 'same-origin' });
    if (!response.ok) throw new IntegrityError(`${url}: HTTP ${response.status}`);
    return new Uint8Array(await response.arrayBuffer());
  };
  let graph;
  try {
    graph = await verifiedGraph(entry, table, fetchBytes);
  } catch (e) {
    throw e instanceof IntegrityError ? e : new IntegrityError(`the worker's code failed its integrity check (${e.message})`);
  }
  const urls = [];
  const top = link(graph, (text) => {
    const url = URL.createObjectURL(new Blob([text], { type: 'text/javascript' }));
    urls.push(url);
    return url;
  });
  const worker = new Worker(top, { type: 'module' });
  try {
    await new Promise((resolve, reject) => {
      worker.onmessage = ({ data }) => (data && data.ready ? resolve() : reject(new Error('the worker did not start')));
      worker.onerror = (e) => reject(new IntegrityError(`the worker did not start (${e.message || 'load error'})`));
    });
  } finally {
    for (const url of urls) URL.revokeObjectURL(url);
  }
  worker.onerror = null;
  return worker;
}
