// The page's Web Worker: proof of work and SMP arithmetic, so the page
// never freezes. Requests {id, op, ...}; answers {id, result} or {id, error}.
// Only relative imports: import maps do not apply inside workers, so the
// page starts it through workerload.js, from integrity-checked blob: URLs.
import { solvePow } from './pow.js';
import { SmpRunner } from './smprun.js';

const smp = new SmpRunner();

self.onmessage = ({ data }) => {
  const { id, op } = data;
  try {
    let result;
    if (op === 'pow') result = solvePow(data.challenge, data.bits);
    else if (op === 'smp') result = smp[data.method](...data.args);
    else throw new Error(`unknown op ${op}`);
    self.postMessage({ id, result });
  } catch (e) {
    self.postMessage({ id, error: String(e && e.message) });
  }
};
self.postMessage({ ready: true }); // every import is loaded and verified: the page may revoke its blob: URLs
