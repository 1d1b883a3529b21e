// The demo page: plain JavaScript that draws the views. Every number it shows is computed by the Rust
// engine (web/src/engine.rs) running in a Web Worker (web/src/worker.rs) through mmea-core's kernels.
// Test hooks: document.title becomes READY (or FAIL) and window.mmeaDemo exposes the loaded state.

const $ = id => document.getElementById(id);
const esc = s => String(s).replace(/[&<>"']/g, c => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
const fmt = (x, d = 3) => (x === null || x === undefined) ? '–' : Number(x).toFixed(d);
const num = x => Number(Number(x).toPrecision(6)); // f32 values without their float noise

// ---- the worker and its request/answer protocol --------------------------------------------------
const worker = new Worker('./worker.js');
let nextId = 1;
const pending = new Map();
let started;
const startedP = new Promise(r => { started = r; });
worker.onmessage = ev => {
  const m = ev.data;
  if (m.event === 'started') return started();
  if (m.event === 'progress') { $('progress').textContent = m.text + '…'; return; }
  const p = pending.get(m.id);
  if (!p) return;
  pending.delete(m.id);
  $('progress').textContent = '';
  if (m.error !== undefined) p.reject(new Error(m.error)); else p.resolve(JSON.parse(m.ok));
};
worker.onerror = ev => fail(`the worker failed: ${ev.message || ev}`);

async function call(method, params = {}, bytes = null, name = null) {
  await startedP;
  const id = nextId++;
  const msg = { id, method, params: JSON.stringify(params) };
  if (bytes) { msg.bytes = bytes; msg.name = name; }
  const t0 = performance.now();
  const answer = await new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject });
    worker.postMessage(msg, bytes ? [bytes] : []);
  });
  return { answer, ms: performance.now() - t0 };
}

function fail(text) {
  console.error(text);
  $('status').textContent = text;
  $('status').className = 'status error';
  document.title = 'FAIL';
}

// ---- state -------------------------------------------------------------------------------------
const state = { summary: null, metrics: null, entity: null, pca: null, sinkhorn: null, byLabel: new Map() };
window.mmeaDemo = state;

// ---- 1. the model ------------------------------------------------------------------------------
function showSummary(s) {
  const m = s.model;
  const names = s.modalities.includes('name');
  $('summary').innerHTML = `
    <table class="kv">
      <tr><th>checkpoint</th><td>${esc(s.source)} (model selected at epoch ${esc(s.epoch)} on the dev split)</td></tr>
      <tr><th>dataset</th><td>${esc(s.dataset)}: ${s.entities[0]} + ${s.entities[1]} entities, ${s.relations} relations, ${s.triples[0]} + ${s.triples[1]} triples</td></tr>
      <tr><th>split</th><td>train ${s.split.train} / dev ${s.split.dev} / test ${s.split.test} (${esc(s.split.source)})</td></tr>
      <tr><th>modalities</th><td>structure + ${s.modalities.map(esc).join(' + ') || 'nothing else'}; names ${names ? 'on' : 'off'}.
        ${s.notes.map(n => `<br><span class="hint">${esc(n)}</span>`).join('')}</td></tr>
      <tr><th>model</th><td>${esc(s.model_name)}: ${Object.entries(m).map(([k, v]) => `${esc(k)} ${esc(typeof v === 'number' ? num(v) : v)}`).join(', ')};
        ${s.parameters.toLocaleString()} parameters; joint embedding ${s.blocks} blocks, ${s.joint_dim} dims</td></tr>
      <tr><th>trained by</th><td><code>${esc(s.command)}</code></td></tr>
    </table>`;
  const dl = $('sources');
  dl.innerHTML = '';
  state.byLabel.clear();
  s.sources.forEach(([label, part], i) => {
    state.byLabel.set(label, i);
    const o = document.createElement('option');
    o.value = label;
    if (part) o.label = `${part} pair`;
    dl.appendChild(o);
  });
}

// ---- 2. metrics --------------------------------------------------------------------------------
function showMetrics(r, recorded, ms) {
  const rows = [];
  let worst = 0;
  for (const dec of ['plain', 'csls', 'sinkhorn']) {
    if (!r[dec]) continue;
    for (const dir of ['l2r', 'r2l']) {
      const m = r[dec][dir];
      const w = recorded && recorded[dec] ? recorded[dec][dir] : null;
      if (w) for (const k of ['hits1', 'hits10', 'mrr', 'mr']) worst = Math.max(worst, Math.abs(m[k] - w[k]));
      rows.push(`<tr><td>${dec === 'csls' ? 'CSLS' : dec === 'sinkhorn' ? 'Sinkhorn' : 'plain'}</td><td>${dir}</td>
        <td>${fmt(m.hits1)}</td><td>${fmt(m.hits10)}</td><td>${fmt(m.mrr)}</td><td>${fmt(m.mr, 2)}</td></tr>`);
    }
  }
  const same = recorded ? `<p class="${worst <= 1e-4 ? 'ok' : 'error'}" id="metrics-check">${worst <= 1e-4 ? 'Equal' : 'NOT equal'} to the metrics
      <code>mmea train</code> recorded natively in the checkpoint (largest difference ${worst.toExponential(1)}).</p>` : '';
  $('metrics').innerHTML = `<table class="grid" id="metrics-table"><tr><th>decoding</th><th>direction</th><th>H@1</th><th>H@10</th><th>MRR</th><th>MR</th></tr>${rows.join('')}</table>
    <p class="hint">${r.pairs} test pairs, computed in ${Math.round(ms)} ms on this device.</p>${same}`;
}

// ---- 3. one entity ---------------------------------------------------------------------------------
function list(title, items, gold, rankKey) {
  const lis = items.map(c => `<li class="${c.gold ? 'gold' : ''}" title="${esc(c.uri)}">${esc(c.label)} <span class="score">${fmt(c.score)}</span>${c.gold ? ' ★' : ''}</li>`).join('');
  const rank = gold ? `<p class="hint">gold at rank ${gold.rank[rankKey]}</p>` : '';
  return `<div class="col"><h3>${title}</h3><ol class="cands" id="list-${rankKey}">${lis}</ol>${rank}</div>`;
}

function showEntity(e, ms) {
  const gold = e.gold ? `gold partner: <strong>${esc(e.gold.label)}</strong>` : 'no gold partner in the data';
  const part = e.part ? `${e.part} pair` : 'not in any pair';
  $('entity').innerHTML = `<p><strong id="entity-label">${esc(e.label)}</strong> <span class="hint">${esc(e.uri)}; ${part}; ${gold} (★ in the lists)</span></p>
    <div class="row">${list('plain (cosine)', e.plain, e.gold, 'plain')}${list('CSLS', e.csls, e.gold, 'csls')}${list('Sinkhorn', e.sinkhorn, e.gold, 'sinkhorn')}</div>`;
  $('entity-time').textContent = `answered in ${ms.toFixed(1)} ms`;
  showWeights(e);
  const sel = $('layer');
  if (sel.options.length !== e.neighbours.layers.length) {
    sel.innerHTML = e.neighbours.layers.map((l, i) => `<option value="${i}">${esc(l)}</option>`).join('');
    sel.value = String(e.neighbours.layers.length - 1);
  }
  showGraph(e);
}

function showWeights(e) {
  if (!e.weights.length) { $('weights').innerHTML = '<p class="hint">This model uses no modality besides the graph structure.</p>'; return; }
  const W = 320, bar = 26, H = e.weights.length * (bar + 12) + 20;
  let svg = `<svg width="${W}" height="${H}" role="img" aria-label="modality weights">`;
  const notes = [];
  e.weights.forEach((w, i) => {
    const y = 10 + i * (bar + 12);
    // Models with global weights only (MCLEA-/EVA-style) draw σ as the bar.
    const om = w.omega ?? w.sigma ?? 0;
    const what = w.beta ? `Beta(${fmt(w.beta.alpha, 2)}, ${fmt(w.beta.beta, 2)}) gate: mean ${fmt(w.beta.mean)}, sd ${fmt(w.beta.sd)}` : (w.omega === null ? `σ = ${fmt(w.sigma)}` : `ω = ${fmt(w.omega)}`);
    svg += `<text x="0" y="${y + bar * 0.7}" class="lbl">${esc(w.modality)}</text>
      <rect x="80" y="${y}" width="${200 * om}" height="${bar}" class="bar"><title>${what}</title></rect>
      <text x="${84 + 200 * om}" y="${y + bar * 0.7}" class="lbl">${w.omega === null ? (w.sigma === null ? 'no ω' : 'σ ' + fmt(w.sigma, 2)) : fmt(w.omega, 2)}</text>`;
    if (w.beta) svg += `<line x1="${80 + 200 * Math.max(0, w.beta.mean - w.beta.sd)}" x2="${80 + 200 * Math.min(1, w.beta.mean + w.beta.sd)}" y1="${y + bar / 2}" y2="${y + bar / 2}" class="sigma"><title>± one standard deviation of the Beta gate</title></line>`;
    if (w.before_calibration !== null && w.before_calibration !== undefined)
      svg += `<rect x="80" y="${y + 3}" width="${200 * w.before_calibration}" height="${bar - 6}" class="raw"><title>before calibration: ${fmt(w.before_calibration)}${w.uncertainty !== null ? `, uncertainty ${fmt(w.uncertainty)}` : ''}</title></rect>`;
    if (w.sigma !== null) svg += `<line x1="${80 + 200 * w.sigma}" x2="${80 + 200 * w.sigma}" y1="${y - 3}" y2="${y + bar + 3}" class="sigma"><title>σ = ${fmt(w.sigma)}</title></line>`;
  });
  if (e.weights.length && e.weights.every(w => w.omega === null && w.sigma !== null)) notes.push('This model has global view weights only (σ = softmax(θ), the same for every entity), the graph structure included.');
  if (e.weights.some(w => w.beta)) notes.push('Bars: the mean of each modality’s Beta gate; the orange line spans ± one standard deviation (the gate’s uncertainty).');
  if (e.weights.some(w => w.before_calibration !== null && w.before_calibration !== undefined)) notes.push('Filled bars: weights after calibration; outlined bars: before (from the modalities’ relative interaction).');
  $('weights').innerHTML = svg + '</svg>' + notes.map(n => `<p class="hint">${n}</p>`).join('') + (e.adaptive_weights || e.weights.every(w => w.omega === null && w.sigma !== null) ? '' : '<p class="hint">Adaptive weights are off in this model.</p>');
}

function showGraph(e) {
  const nb = e.neighbours, L = Number($('layer').value || 0);
  if (!nb.shown.length) { $('graph').innerHTML = '<p class="hint">This entity has no neighbours.</p>'; return; }
  const W = 460, H = 360, cx = W / 2, cy = H / 2, R = 130;
  let svg = `<svg width="${W}" height="${H}" role="img" aria-label="neighbourhood">`;
  const n = nb.shown.length;
  nb.shown.forEach((x, i) => {
    const a = 2 * Math.PI * i / n - Math.PI / 2;
    const px = cx + R * Math.cos(a), py = cy + R * Math.sin(a);
    const alpha = x.alpha.length ? x.alpha[Math.min(L, x.alpha.length - 1)].alpha : 0;
    const rel = x.relations.map(r => r.name).join(', ');
    svg += `<line x1="${cx}" y1="${cy}" x2="${px}" y2="${py}" class="edge" stroke-width="${1 + 14 * alpha}"><title>${esc(rel)}: α = ${fmt(alpha)}</title></line>
      <text x="${cx + 0.62 * (px - cx)}" y="${cy + 0.62 * (py - cy) - 3}" text-anchor="middle" class="rel">${esc(rel.length > 24 ? rel.slice(0, 23) + '…' : rel)} ${fmt(alpha, 2)}</text>
      <circle cx="${px}" cy="${py}" r="5" class="kg${x.tail < state.summary.entities[0] ? 1 : 2}"><title>${esc(x.label)}</title></circle>
      <text x="${px + (Math.cos(a) >= 0 ? 8 : -8)}" y="${py + 4}" text-anchor="${Math.cos(a) >= 0 ? 'start' : 'end'}" class="lbl">${esc(x.label.length > 22 ? x.label.slice(0, 21) + '…' : x.label)}</text>`;
  });
  svg += `<circle cx="${cx}" cy="${cy}" r="8" class="centre"/><text x="${cx}" y="${cy - 12}" text-anchor="middle" class="lbl strong">${esc(e.label)}</text></svg>`;
  $('graph').innerHTML = svg + `<p class="hint">${n} of ${nb.total} neighbours shown (strongest attention in the last layer).</p>`;
}

// ---- 4. Sinkhorn -------------------------------------------------------------------------------------
function showSinkhorn() {
  const s = state.sinkhorn;
  if (!s) return;
  const t = Number($('iter').value);
  $('iter-label').textContent = `${t} of ${s.steps.length - 1} (ε = ${num(s.eps)})`;
  const step = s.steps[t], b = s.size, c = 22, off = 150, top = 150;
  let max = 0;
  for (const v of step.plan) max = Math.max(max, v);
  let svg = `<svg width="${off + b * c + 70}" height="${top + b * c + 30}" role="img" aria-label="transport plan">`;
  s.cols.forEach((l, j) => { svg += `<text transform="translate(${off + j * c + c * 0.7},${top - 4}) rotate(-60)" class="lbl small">${esc(l.slice(0, 20))}</text>`; });
  for (let i = 0; i < b; i++) {
    svg += `<text x="${off - 4}" y="${top + i * c + c * 0.7}" text-anchor="end" class="lbl small">${esc(s.rows[i].slice(0, 20))}</text>`;
    for (let j = 0; j < b; j++) {
      const v = step.plan[i * b + j], shade = Math.round(255 * (1 - Math.sqrt(v / (max || 1))));
      svg += `<rect x="${off + j * c}" y="${top + i * c}" width="${c - 1}" height="${c - 1}" fill="rgb(${shade},${shade},255)" class="${i === j ? 'diag' : ''}"><title>${esc(s.rows[i])} → ${esc(s.cols[j])}: plan ${fmt(v, 4)}, score ${fmt(s.scores[i * b + j])}</title></rect>`;
    }
    svg += `<text x="${off + b * c + 6}" y="${top + i * c + c * 0.7}" class="lbl small">${fmt(step.row_sums[i], 2)}</text>`;
  }
  step.col_sums.forEach((v, j) => { svg += `<text x="${off + j * c + 2}" y="${top + b * c + 14}" class="lbl tiny">${fmt(v, 2)}</text>`; });
  const diagWins = Array.from({ length: b }, (_, i) => i).filter(i => {
    let best = 0;
    for (let j = 1; j < b; j++) if (step.plan[i * b + j] > step.plan[i * b + best]) best = j;
    return best === i;
  }).length;
  $('sinkhorn').innerHTML = svg + `</svg><p class="hint">Row sums on the right, column sums below. The largest entry of a row is on the
    diagonal (the gold partner) for <strong>${diagWins} of ${b}</strong> rows at this iteration.</p>`;
}

// ---- 5. PCA ------------------------------------------------------------------------------------------
function showPca() {
  const p = state.pca;
  if (!p) return;
  const W = 640, H = 480, pad = 20;
  let [x0, x1, y0, y1] = [Infinity, -Infinity, Infinity, -Infinity];
  for (const [x, y] of p.points) { x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y); }
  const X = x => pad + (x - x0) / (x1 - x0 || 1) * (W - 2 * pad), Y = y => H - pad - (y - y0) / (y1 - y0 || 1) * (H - 2 * pad);
  let svg = `<svg width="${W}" height="${H}" role="img" aria-label="PCA of the embeddings" class="pca">`;
  p.points.forEach(([x, y], i) => { svg += `<circle cx="${X(x).toFixed(1)}" cy="${Y(y).toFixed(1)}" r="2.2" class="kg${i < p.n1 ? 1 : 2}"><title>${esc(p.labels[i])}</title></circle>`; });
  const line = (a, b, cls) => `<line x1="${X(p.points[a][0]).toFixed(1)}" y1="${Y(p.points[a][1]).toFixed(1)}" x2="${X(p.points[b][0]).toFixed(1)}" y2="${Y(p.points[b][1]).toFixed(1)}" class="${cls}"/>`;
  const pairs = $('all-pairs').checked ? p.test_pairs.slice() : [];
  const e = state.entity;
  if (e && e.plain.length) pairs.push([e.index, p.n1 + e.plain[0].target, e.gold ? p.n1 + e.gold.target : null]);
  for (const [s, pred, gold] of pairs) {
    if (gold !== null) svg += line(s, gold, 'goldline');
    if (pred !== gold) svg += line(s, pred, 'wrongline');
  }
  if (state.entity) {
    const [x, y] = p.points[state.entity.index];
    svg += `<circle cx="${X(x)}" cy="${Y(y)}" r="6" class="centre"><title>${esc(state.entity.label)}</title></circle>`;
  }
  const correct = p.test_pairs.filter(t => t[1] === t[2]).length;
  $('pca').innerHTML = svg + `</svg><p class="hint">First two components explain ${(100 * p.explained[0]).toFixed(1)}% and ${(100 * p.explained[1]).toFixed(1)}% of the variance.
    Plain top-1 over all English entities is right for ${correct} of ${p.test_pairs.length} test pairs.</p>`;
}

// ---- wiring --------------------------------------------------------------------------------------------
async function selectEntity(index) {
  const { answer: e, ms } = await call('entity', { index });
  state.entity = e;
  showEntity(e, ms);
  showPca();
  const { answer: s } = await call('sinkhorn', { index, size: 12, iters: 10 });
  state.sinkhorn = s;
  $('iter').max = String(s.steps.length - 1);
  showSinkhorn();
  return e;
}
state.selectEntity = selectEntity;

async function loadCheckpoint(bytes, name) {
  const { answer: s, ms } = await call('load', {}, bytes, name);
  state.summary = s;
  showSummary(s);
  $('status').textContent += ` Loaded ${name} and ran the forward pass in ${Math.round(ms)} ms.`;
  $('metrics').textContent = 'Evaluating…';
  const m = await call('metrics');
  state.metrics = m.answer;
  showMetrics(m.answer, s.recorded_metrics ? s.recorded_metrics.test : null, m.ms);
  const p = await call('pca', { iters: 40 });
  state.pca = p.answer;
  // Start on the first test pair's source.
  const first = s.sources.findIndex(x => x[1] === 'test');
  $('search').value = s.sources[Math.max(first, 0)][0];
  await selectEntity(Math.max(first, 0));
}

$('pick').addEventListener('submit', ev => {
  ev.preventDefault();
  const q = $('search').value.trim();
  let i = state.byLabel.get(q);
  if (i === undefined) {
    const lower = q.toLowerCase();
    i = state.summary ? state.summary.sources.findIndex(x => x[0].toLowerCase().includes(lower)) : -1;
  }
  if (i === undefined || i < 0) { $('entity').innerHTML = `<p class="error">No source entity matches “${esc(q)}”.</p>`; return; }
  selectEntity(i).catch(e => fail(String(e)));
});
$('layer').addEventListener('change', () => state.entity && showGraph(state.entity));
$('iter').addEventListener('input', showSinkhorn);
$('all-pairs').addEventListener('change', showPca);
$('file').addEventListener('change', async () => {
  const f = $('file').files[0];
  if (!f) return;
  $('load-error').hidden = true;
  try {
    await loadCheckpoint(await f.arrayBuffer(), f.name);
  } catch (e) {
    $('load-error').hidden = false;
    $('load-error').textContent = `Could not open ${f.name}: ${e.message}. The previous model stays loaded.`;
  }
});
$('selfcheck').addEventListener('click', async () => {
  $('out').textContent = 'running…';
  const { answer: r } = await call('selfcheck');
  $('out').textContent = r.lines.join('\n') + `\nself-check: ${r.passed} passed, ${r.failed} failed`;
});

(async () => {
  try {
    const params = new URLSearchParams(location.search);
    const { answer: dev } = await call('init', { cpu: params.has('cpu') });
    state.device = dev;
    $('status').textContent = dev.backend === 'webgpu'
      ? `Running on WebGPU: ${dev.adapter} (${dev.kind}).`
      : `WebGPU unavailable: ${dev.reason}. Running on the CPU backend (WebAssembly).`;
    const res = await fetch('./checkpoint.safetensors');
    if (!res.ok) throw new Error(`could not fetch the bundled checkpoint: HTTP ${res.status}`);
    await loadCheckpoint(await res.arrayBuffer(), 'checkpoint.safetensors (bundled)');
    document.title = 'READY';
  } catch (e) {
    fail(`Error: ${e.message || e}`);
  }
})();
