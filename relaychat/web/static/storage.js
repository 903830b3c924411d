// What the page keeps in IndexedDB: the profile (nickname and key
// secrets, optionally sealed under a passphrase), the pins and the ids of
// mail already shown. One object store of plain records.
import { chacha20poly1305 } from './vendor/node_modules/@noble/ciphers/chacha.js';
import { scryptAsync } from './vendor/node_modules/@noble/hashes/scrypt.js';
import { randomBytes } from './vendor/node_modules/@noble/hashes/utils.js';
import { concat, utf8 } from './bytes.js';

const DB = 'relaychat';
const STORE = 'kv';
// scrypt as recommended for interactive logins (N = 2^15, r = 8, p = 1: 32 MiB).
const SCRYPT = { N: 2 ** 15, r: 8, p: 1, dkLen: 32 };
const AD = utf8('relaychat browser key v1');

export class WrongPassphrase extends Error {}

function open() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DB, 1);
    request.onupgradeneeded = () => request.result.createObjectStore(STORE);
    request.onsuccess = () => {
      const d = request.result;
      // Another tab upgrading or deleting the database: let it, and reopen on next use.
      d.onversionchange = () => {
        d.close();
        dbPromise = null;
      };
      resolve(d);
    };
    request.onerror = () => reject(request.error);
  });
}

let dbPromise = null;
function db() {
  return (dbPromise ??= open());
}

export async function get(key) {
  const d = await db();
  return new Promise((resolve, reject) => {
    const r = d.transaction(STORE).objectStore(STORE).get(key);
    r.onsuccess = () => resolve(r.result ?? null);
    r.onerror = () => reject(r.error);
  });
}

export async function put(key, value) {
  const d = await db();
  return new Promise((resolve, reject) => {
    const t = d.transaction(STORE, 'readwrite');
    t.objectStore(STORE).put(value, key);
    t.oncomplete = () => resolve();
    t.onerror = () => reject(t.error);
  });
}

/** The 64 secret bytes, in the clear or sealed with scrypt + ChaCha20-Poly1305. */
export async function sealSecrets(secrets, passphrase) {
  const raw = concat(secrets.identity, secrets.static);
  if (!passphrase) return { clear: raw };
  const salt = randomBytes(16);
  const nonce = randomBytes(12);
  const key = await scryptAsync(utf8(passphrase), salt, SCRYPT);
  return { salt, nonce, sealed: chacha20poly1305(key, nonce, AD).encrypt(raw) };
}

export async function openSecrets(record, passphrase) {
  let raw = record.clear;
  if (!raw) {
    const key = await scryptAsync(utf8(passphrase ?? ''), record.salt, SCRYPT);
    try {
      raw = chacha20poly1305(key, record.nonce, AD).decrypt(record.sealed);
    } catch {
      throw new WrongPassphrase('That passphrase does not open the key kept in this browser.');
    }
  }
  return { identity: raw.slice(0, 32), static: raw.slice(32, 64) };
}
