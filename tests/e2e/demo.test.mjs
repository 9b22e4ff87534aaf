// End-to-end test of the server example's demo page in headless Chromium.
//
// Needs a running `cargo run --example server` at INTAKE_URL (tests/e2e/run.sh starts one) and
// Debian's chromium (CHROMIUM overrides the path). Run with `node --test tests/e2e/demo.test.mjs`.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { deflateSync } from 'node:zlib';
import { chromium } from 'playwright-core';

const BASE_URL = process.env.INTAKE_URL || 'http://127.0.0.1:38080/';
const ARTIFACTS = join(dirname(fileURLToPath(import.meta.url)), 'artifacts');
const TIMEOUT = 60_000;

const sha256 = (buf) => createHash('sha256').update(buf).digest('hex');

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
function chunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([len, body, crc]);
}

// A valid 1024×1024 RGB PNG of noise, stored uncompressed: about 3 MiB.
function makePng(width = 1024, height = 1024) {
  const stride = width * 3 + 1;
  const raw = randomBytes(stride * height);
  for (let y = 0; y < height; y++) raw[y * stride] = 0; // filter type "None" on every row
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit, truecolour, deflate, adaptive filtering, no interlace
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(raw, { level: 0 })),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

let browser;

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--disable-dev-shm-usage',
    ],
  });
});

after(async () => {
  await browser?.close();
});

async function openPage() {
  const context = await browser.newContext({ viewport: { width: 900, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  const consoleErrors = [];
  page.on('console', (msg) => { if (msg.type() === 'error') consoleErrors.push(msg.text()); });
  page.on('pageerror', (err) => consoleErrors.push(String(err)));
  // Record the order in which the page talks to the server.
  const requests = [];
  page.on('request', (req) => requests.push({ method: req.method(), url: new URL(req.url()) }));
  const res = await page.goto(BASE_URL);
  assert.equal(res.status(), 200, 'GET / should serve the demo page');
  assert.equal(await page.title(), 'intake — upload demo');
  return { context, page, requests, consoleErrors };
}

test('uploads two files with SSE progress and downloads them back', { timeout: 2 * TIMEOUT }, async () => {
  const { context, page, requests, consoleErrors } = await openPage();
  try {
    const png = makePng();
    const txt = Buffer.from('hello from the intake e2e test\n');
    const sent = new Map([
      ['noise.png', { buffer: png, mimeType: 'image/png' }],
      ['hello.txt', { buffer: txt, mimeType: 'text/plain' }],
    ]);

    await page.setInputFiles('#file-input', [...sent].map(([name, f]) => ({ name, ...f })));
    await page.waitForFunction(() => document.getElementById('selection').textContent.includes('2 files'));
    await page.fill('#note', 'hello');

    const responsePromise = page.waitForResponse((r) => new URL(r.url()).pathname.endsWith('/upload/form'));
    await page.click('#upload-button');
    const response = await responsePromise;
    const body = await response.json();
    assert.equal(response.status(), 201, `upload answered ${response.status()}: ${JSON.stringify(body)}`);

    await page.waitForFunction(() => document.querySelectorAll('#results li a').length === 2);
    // The final SSE event may land just after the response: wait for the stream to finish.
    await page.waitForFunction(() => document.getElementById('progress').dataset.state === 'done');

    // The EventSource was opened before the upload was sent, with the same progress id.
    const sseIdx = requests.findIndex((r) => r.url.pathname.includes('/upload/progress/'));
    const postIdx = requests.findIndex((r) => r.method === 'POST' && r.url.pathname.endsWith('/upload/form'));
    assert.ok(sseIdx >= 0, 'the page subscribed to upload/progress/{id}');
    assert.ok(postIdx > sseIdx, 'the SSE subscription precedes the POST');
    const progressId = requests[sseIdx].url.pathname.split('/').pop();
    assert.match(progressId, /^[A-Za-z0-9_-]{8,64}$/);
    assert.equal(requests[postIdx].url.searchParams.get('progress_id'), progressId);
    assert.equal(body.progress_id, progressId);
    assert.deepEqual(body.fields, { note: 'hello' });

    const bar = await page.$eval('#progress', (p) => ({
      value: p.value, max: p.max, events: Number(p.dataset.events), sse: p.dataset.sse,
      text: document.getElementById('progress-text').textContent,
    }));
    assert.ok(bar.events >= 1, `the page saw SSE events (${bar.events})`);
    assert.ok(bar.max > 1, `the progress bar got a total from the stream (max ${bar.max})`);
    assert.equal(bar.value, bar.max, `the progress bar reached its max (${bar.value} of ${bar.max})`);
    assert.match(bar.text, /^Done: .* \(100 %\)$/);
    await page.waitForFunction(() => document.getElementById('progress').dataset.sse === 'closed');
    assert.equal(await page.textContent('#error'), '');

    // Each stored file is listed with a link, its size, content type and a sha256 prefix.
    const items = await page.$$eval('#results li', (lis) => lis.map((li) => ({
      name: li.querySelector('a').textContent, href: li.querySelector('a').href, text: li.textContent,
    })));
    assert.equal(body.files.length, 2);
    for (const file of body.files) {
      const original = sent.get(file.name);
      assert.ok(original, `unexpected file name ${file.name}`);
      assert.equal(file.size, original.buffer.length);
      assert.equal(file.sha256, sha256(original.buffer));
      assert.equal(file.field, 'file');
      assert.match(file.id, /^[0-9a-f]{32}$/);
      const item = items.find((i) => i.name === file.name);
      assert.ok(item, `${file.name} is listed`);
      assert.ok(item.text.includes(file.sha256.slice(0, 12)), `${file.name} shows its sha256 prefix`);
      assert.ok(item.text.includes(file.content_type), `${file.name} shows its content type`);
      assert.equal(new URL(item.href).pathname, new URL(file.url, BASE_URL).pathname);
    }
    assert.equal(body.files.find((f) => f.name === 'noise.png').content_type, 'image/png');

    // Download the PNG from Node and the text file from inside the page; compare the bytes.
    const pngItem = items.find((i) => i.name === 'noise.png');
    const download = await fetch(pngItem.href);
    assert.equal(download.status, 200);
    assert.match(download.headers.get('content-disposition') || '', /^attachment/);
    const downloaded = Buffer.from(await download.arrayBuffer());
    assert.equal(downloaded.length, png.length);
    assert.equal(sha256(downloaded), sha256(png));

    const txtItem = items.find((i) => i.name === 'hello.txt');
    const inPage = await page.evaluate(async (href) => {
      const r = await fetch(href);
      return { status: r.status, text: await r.text() };
    }, txtItem.href);
    assert.equal(inPage.status, 200);
    assert.equal(inPage.text, txt.toString());

    await page.screenshot({ path: join(ARTIFACTS, 'demo.png'), fullPage: true });
    assert.deepEqual(consoleErrors, []);
  } finally {
    await context.close();
  }
});

test('rejects an executable disguised as cat.png and shows the problem code', { timeout: 2 * TIMEOUT }, async () => {
  const { context, page } = await openPage();
  try {
    const elf = Buffer.concat([Buffer.from([0x7f, 0x45, 0x4c, 0x46, 0x02, 0x01, 0x01, 0x00]), Buffer.alloc(4096, 0)]);
    await page.setInputFiles('#file-input', [{ name: 'cat.png', mimeType: 'image/png', buffer: elf }]);

    const responsePromise = page.waitForResponse((r) => new URL(r.url()).pathname.endsWith('/upload/form'));
    await page.click('#upload-button');
    const response = await responsePromise;
    assert.equal(response.status(), 415);
    assert.match(response.headers()['content-type'] || '', /^application\/problem\+json/);
    const problem = await response.json();
    assert.equal(problem.status, 415);
    assert.equal(typeof problem.code, 'string');
    assert.ok(problem.code.length > 0);

    await page.waitForFunction(() => document.getElementById('error').textContent.trim() !== '');
    const errorText = await page.textContent('#error');
    assert.ok(errorText.includes(problem.code), `error "${errorText}" mentions code ${problem.code}`);
    if (problem.title) assert.ok(errorText.includes(problem.title), `error "${errorText}" mentions the title`);
    assert.equal(await page.$$eval('#results li a', (as) => as.length), 0, 'nothing is listed as stored');

    // The page stops the EventSource (after the failed event, or after its grace period).
    await page.waitForFunction(() => document.getElementById('progress').dataset.sse === 'closed', null, { timeout: 15_000 });
    await page.screenshot({ path: join(ARTIFACTS, 'error.png'), fullPage: true });
  } finally {
    await context.close();
  }
});
