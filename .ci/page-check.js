// End-to-end check of the built demo in Debian's Chromium (Playwright): load the page, wait until it is
// READY, compare its in-browser test metrics with native `mmea eval --json` of the same checkpoint (1e-4),
// pick a known source entity and compare its top-1 with native `mmea align`, upload a corrupt file and
// expect a clear message, run the kernel self-check,
// save a screenshot, and fail on any page error or console error.
// Usage: node page-check.js URL webgpu|cpu SCREENSHOT EVAL_JSON ALIGN_TSV ENTITY_LABEL
// "cpu" launches Chromium without --enable-unsafe-webgpu: requestAdapter() returns null on this platform,
// so the page must say why and reach the CPU fallback.
const fs = require('fs');
const path = require('path');
const { chromium } = require(path.join(__dirname, 'node_modules', 'playwright-core'));

function nativeTop1(tsv, label) {
  // Columns: source_id source rank candidate_id candidate score gold source_in_training
  for (const line of fs.readFileSync(tsv, 'utf8').split('\n').slice(1)) {
    const c = line.split('\t');
    if (c.length < 6 || c[2] !== '1') continue;
    const src = c[1].split('/').pop().replace(/_/g, ' ');
    if (src === label) return c[4].split('/').pop().replace(/_/g, ' ');
  }
  return null;
}

(async () => {
  const [url, mode, shot, evalJson, alignTsv, entity] = process.argv.slice(2);
  const args = ['--no-sandbox', '--disable-gpu-sandbox', '--disable-background-networking', '--disable-component-update',
                '--disable-sync', '--no-first-run', '--disable-quic', '--disable-dev-shm-usage'];
  if (mode === 'webgpu') args.push('--enable-unsafe-webgpu');
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args });
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const problems = [];
  page.on('console', m => { console.log(`[${mode}] ${m.text()}`); if (m.type() === 'error') problems.push(`console error: ${m.text()}`); });
  page.on('pageerror', e => problems.push(`page error: ${e.message}`));
  let ok = false;
  try {
    const t0 = Date.now();
    await page.goto(url);
    await page.waitForFunction(() => ['READY', 'FAIL'].includes(document.title), null, { timeout: 400000 });
    const title = await page.title();
    const status = await page.textContent('#status');
    console.log(`[${mode}] ${title} after ${((Date.now() - t0) / 1000).toFixed(1)} s: ${status}`);
    if (title !== 'READY') throw new Error(`page reported ${title}: ${status}`);
    if (mode === 'webgpu' && !/Running on WebGPU/.test(status)) problems.push('expected WebGPU to be used');
    if (mode === 'cpu' && !/WebGPU unavailable: navigator.gpu exists but requestAdapter\(\) found no adapter.*CPU backend/.test(status))
      problems.push('expected the CPU fallback with its reason');

    // Metrics: every decoding, direction and measure against the native evaluation.
    const got = await page.evaluate(() => window.mmeaDemo.metrics);
    const want = JSON.parse(fs.readFileSync(evalJson, 'utf8'));
    let compared = 0, worst = 0;
    for (const dec of ['plain', 'csls', 'sinkhorn'])
      for (const dir of ['l2r', 'r2l'])
        for (const k of ['hits1', 'hits10', 'hits50', 'mrr', 'mr']) {
          const d = Math.abs(got[dec][dir][k] - want[dec][dir][k]);
          worst = Math.max(worst, d);
          compared++;
          if (!(d <= 1e-4)) problems.push(`metric ${dec} ${dir} ${k}: browser ${got[dec][dir][k]}, native ${want[dec][dir][k]}`);
        }
    console.log(`[${mode}] metrics: ${compared} values compared with native mmea eval, largest difference ${worst.toExponential(2)}`);

    // A known source entity, picked through the search box.
    const expect = nativeTop1(alignTsv, entity);
    if (!expect) throw new Error(`${entity} is not a source in ${alignTsv}`);
    await page.fill('#search', entity);
    const t1 = Date.now();
    await page.click('#pick button');
    await page.waitForFunction(e => { const el = document.getElementById('entity-label'); return el && el.textContent === e; }, entity, { timeout: 60000 });
    const top1 = (await page.textContent('#list-plain li:first-child')).replace(/\s+[-\d.]+(\s+★)?\s*$/, '').trim();
    console.log(`[${mode}] ${entity}: browser top-1 "${top1}", native mmea align top-1 "${expect}" (${Date.now() - t1} ms)`);
    if (top1 !== expect) problems.push(`top-1 of ${entity}: browser "${top1}", native "${expect}"`);
    await page.waitForFunction(() => document.querySelector('#sinkhorn svg') && document.querySelector('#pca svg') && document.querySelector('#graph svg'), null, { timeout: 60000 });
    // Move the Sinkhorn slider to the last iteration so the screenshot shows a converged plan.
    await page.$eval('#iter', el => { el.value = el.max; el.dispatchEvent(new Event('input')); });

    // A corrupt upload gets a clear message and leaves the loaded model in place.
    await page.setInputFiles('#file', { name: 'broken.safetensors', mimeType: 'application/octet-stream', buffer: Buffer.from('not a checkpoint at all') });
    await page.waitForFunction(() => !document.getElementById('load-error').hidden, null, { timeout: 60000 });
    const loadErr = await page.textContent('#load-error');
    console.log(`[${mode}] corrupt upload: ${loadErr}`);
    if (!/Could not open broken\.safetensors: .*not a safetensors/.test(loadErr)) problems.push(`unclear message for a corrupt upload: ${loadErr}`);
    if ((await page.textContent('#entity-label')) !== entity) problems.push('the corrupt upload replaced the loaded state');

    // The kernel self-check on this device.
    await page.click('#selfcheck');
    await page.waitForFunction(() => /self-check: \d+ passed/.test(document.getElementById('out').textContent), null, { timeout: 300000 });
    const out = await page.textContent('#out');
    if (!/ok +reflection attention/.test(out) || !/self-check: [4-9]\d* passed, 0 failed/.test(out))
      problems.push(`expected the full self-check (including reflection attention) to pass:\n${out}`);
    await page.screenshot({ path: shot, fullPage: true });
    ok = problems.length === 0;
  } catch (e) {
    problems.push(String(e));
    try { await page.screenshot({ path: shot, fullPage: true }); } catch (_) { /* ignore */ }
  }
  await browser.close();
  for (const p of problems) console.error(`[${mode}] ${p}`);
  console.log(`[${mode}] page check: ${ok && problems.length === 0 ? 'passed' : 'FAILED'} (screenshot ${shot})`);
  process.exit(ok && problems.length === 0 ? 0 : 1);
})();
