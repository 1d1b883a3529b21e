// Load the built page in Debian's Chromium, wait until it reports PASS or FAIL in its title, save a
// screenshot, and fail on any page error or console error.
// Usage: node page-check.js URL webgpu|cpu SCREENSHOT
// "cpu" launches Chromium without --enable-unsafe-webgpu: requestAdapter() returns null on this platform,
// so the page must say why and reach the CPU fallback.
const path = require('path');
const { chromium } = require(path.join(__dirname, 'node_modules', 'playwright-core'));

(async () => {
  const [url, mode, shot] = process.argv.slice(2);
  const args = ['--no-sandbox', '--disable-gpu-sandbox', '--disable-background-networking', '--disable-component-update',
                '--disable-sync', '--no-first-run', '--disable-quic', '--disable-dev-shm-usage'];
  if (mode === 'webgpu') args.push('--enable-unsafe-webgpu');
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args });
  const page = await browser.newPage();
  const problems = [];
  page.on('console', m => { console.log(`[${mode}] ${m.text()}`); if (m.type() === 'error') problems.push(`console error: ${m.text()}`); });
  page.on('pageerror', e => problems.push(`page error: ${e.message}`));
  let ok = false;
  try {
    await page.goto(url);
    await page.waitForFunction(() => ['PASS', 'FAIL'].includes(document.title), null, { timeout: 180000 });
    const out = await page.textContent('#out');
    await page.screenshot({ path: shot, fullPage: true });
    const title = await page.title();
    if (title !== 'PASS') problems.push(`page reported ${title}`);
    if (mode === 'webgpu' && !/WebGPU adapter:/.test(out)) problems.push('expected a WebGPU adapter');
    if (mode === 'cpu' && !/WebGPU unavailable: navigator.gpu exists but requestAdapter\(\) found no adapter.*CPU backend/.test(out))
      problems.push('expected the CPU fallback with its reason');
    // Every self-check case must have run and passed, the reflection-attention layer included.
    if (!/ok +reflection attention/.test(out) || !/self-check: [4-9]\d* passed, 0 failed/.test(out))
      problems.push('expected the full self-check (including reflection attention) to pass');
    ok = problems.length === 0;
  } catch (e) {
    problems.push(String(e));
  }
  await browser.close();
  for (const p of problems) console.error(`[${mode}] ${p}`);
  console.log(`[${mode}] page check: ${ok ? 'passed' : 'FAILED'} (screenshot ${shot})`);
  process.exit(ok ? 0 : 1);
})();
