#!/usr/bin/env node
// Vendored @noble/* for the browser client: refresh from npm, or check.
//
//   node relaychat/web/vendor.mjs check     files on disk == VENDOR.json (the test suite runs this)
//   node relaychat/web/vendor.mjs refresh   `npm pack` each package at the pinned version,
//                                           check the tarball against npm's integrity and the
//                                           recorded per-file SHA-256s, then (re)write the files
//   node relaychat/web/vendor.mjs refresh --accept   ... and accept new hashes (a new version)
//
// Why noble: audited, dependency-free (curves needs only hashes), plain ES
// modules that load unchanged in a browser and in node, synchronous (so the
// Noise state machine keeps the Python shape), and byte-identical to
// `cryptography` on every primitive the protocol uses. Files are copied
// unchanged from the published tarball: only the import closure of the
// entry points below, plus each package's LICENSE and package.json (node
// needs its "exports" map to resolve @noble/hashes from @noble/curves).
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, mkdirSync, rmSync, existsSync, readdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve, posix } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = join(HERE, 'static', 'vendor', 'node_modules');
const MANIFEST = join(HERE, 'static', 'vendor', 'VENDOR.json');
const PACKAGES = {
  '@noble/hashes': ['sha2.js', 'hmac.js', 'hkdf.js', 'scrypt.js', 'utils.js'],
  '@noble/ciphers': ['chacha.js', 'utils.js'],
  '@noble/curves': ['ed25519.js', 'abstract/modular.js', 'utils.js'],
};
const EXTRA = ['LICENSE', 'package.json'];

const sha256 = (data) => createHash('sha256').update(data).digest('hex');

/** Relative imports of one ES module (static `import ... from "./x.js"` / `export ... from`). */
function relativeImports(source) {
  const out = [];
  const re = /^\s*(?:import|export)\s[^;]*?from\s*["'](\.{1,2}\/[^"']+)["']/gms;
  for (const m of source.matchAll(re)) out.push(m[1]);
  return out;
}

/** The entry points and every file they reach by relative import. */
function closure(dir, entries) {
  const seen = new Set();
  const todo = [...entries];
  while (todo.length) {
    const file = posix.normalize(todo.pop());
    if (seen.has(file)) continue;
    seen.add(file);
    const text = readFileSync(join(dir, file), 'utf8');
    for (const spec of relativeImports(text)) todo.push(posix.join(posix.dirname(file), spec));
  }
  return [...seen].sort();
}

function listed(manifest) {
  const files = {};
  for (const [name, info] of Object.entries(manifest.packages))
    for (const [file, hash] of Object.entries(info.files)) files[posix.join(name, file)] = hash;
  return files;
}

function walk(dir) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((entry) => {
    const path = join(dir, entry);
    return statSync(path).isDirectory() ? walk(path) : [path];
  });
}

function check() {
  const manifest = JSON.parse(readFileSync(MANIFEST, 'utf8'));
  const want = listed(manifest);
  const problems = [];
  for (const [file, hash] of Object.entries(want)) {
    const path = join(ROOT, file);
    if (!existsSync(path)) problems.push(`missing ${file}`);
    else if (sha256(readFileSync(path)) !== hash) problems.push(`changed ${file}`);
  }
  for (const path of walk(ROOT)) {
    const file = relative(ROOT, path).split('\\').join('/');
    if (!(file in want)) problems.push(`not in VENDOR.json: ${file}`);
  }
  return problems;
}

function refresh(accept) {
  const old = existsSync(MANIFEST) ? JSON.parse(readFileSync(MANIFEST, 'utf8')) : { packages: {} };
  const work = mkdtempSync(join(tmpdir(), 'noble-'));
  const manifest = {
    comment: 'Written by relaychat/web/vendor.mjs; files are copied unchanged from the npm tarballs.',
    packages: {},
  };
  const problems = [];
  try {
    for (const [name, entries] of Object.entries(PACKAGES)) {
      const version = old.packages[name]?.version ?? process.env.NOBLE_VERSION ?? '2.4.0';
      const spec = `${name}@${version}`;
      // npm pack verifies the tarball against the registry's dist.integrity itself;
      // we record that integrity too, so a changed tarball is visible in review.
      const [meta] = JSON.parse(execFileSync('npm', ['pack', '--json', spec], { cwd: work, encoding: 'utf8' }));
      const unpacked = join(work, name.replace('/', '+'));
      mkdirSync(unpacked);
      execFileSync('tar', ['xzf', join(work, meta.filename), '-C', unpacked]);
      const pkg = join(unpacked, 'package');
      const info = JSON.parse(readFileSync(join(pkg, 'package.json'), 'utf8'));
      const files = [...closure(pkg, entries), ...EXTRA];
      const hashes = {};
      for (const file of files) hashes[file] = sha256(readFileSync(join(pkg, file)));
      const before = old.packages[name];
      if (before && !accept) {
        for (const [file, hash] of Object.entries(hashes))
          if (before.files[file] !== hash) problems.push(`${spec}: ${file} differs from VENDOR.json`);
        for (const file of Object.keys(before.files))
          if (!(file in hashes)) problems.push(`${spec}: ${file} no longer needed`);
        if (before.integrity !== meta.integrity) problems.push(`${spec}: tarball integrity differs`);
      }
      manifest.packages[name] = {
        version: info.version, license: info.license, integrity: meta.integrity,
        entries, files: hashes, _pkg: pkg,
      };
    }
    if (problems.length) return problems;
    rmSync(ROOT, { recursive: true, force: true });
    for (const [name, info] of Object.entries(manifest.packages)) {
      for (const file of Object.keys(info.files)) {
        const target = join(ROOT, name, file);
        mkdirSync(dirname(target), { recursive: true });
        writeFileSync(target, readFileSync(join(info._pkg, file)));
      }
      delete info._pkg;
    }
    writeFileSync(MANIFEST, JSON.stringify(manifest, null, 2) + '\n');
    return check();
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

const [command, flag] = process.argv.slice(2);
let problems;
if (command === 'check') problems = check();
else if (command === 'refresh') problems = refresh(flag === '--accept');
else {
  console.error('usage: vendor.mjs check | refresh [--accept]');
  process.exit(2);
}
for (const p of problems) console.error(p);
if (problems.length) process.exit(1);
console.log(`${command}: ok (${Object.keys(listed(JSON.parse(readFileSync(MANIFEST, 'utf8')))).length} files)`);
