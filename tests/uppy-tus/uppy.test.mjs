// Uppy's tus plugin (@uppy/core + @uppy/dashboard + @uppy/tus, from npm) in headless Chromium
// against the intake server example, through Uppy's Dashboard as a user would: add files, press
// Upload, watch the progress.
//
//   INTAKE_SERVER_BIN=target/debug/examples/server node --test tests/uppy-tus/uppy.test.mjs
//
// `bash tests/uppy-tus/run.sh` builds the server and installs what this needs. The test starts
// the server itself (so it can kill it mid-upload) on a free loopback port with a temporary
// storage directory. The page is served by Playwright's request interception at
// `http://127.0.0.1:PORT/uppy-test/`, so it is same-origin with the server and no CORS is
// involved; its script is `page.mjs`, bundled with esbuild when the test starts. Uploads are
// slowed down with Chromium's own network throttling (DevTools protocol) so that the server can
// be killed, and the page reloaded, while they are under way. Every wait is bounded.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, closeSync } from 'node:fs'
import { createServer } from 'node:net'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { after, before, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import * as esbuild from 'esbuild'
import { chromium } from 'playwright-core'

const HERE = dirname(fileURLToPath(import.meta.url))
const ARTIFACTS = join(HERE, 'artifacts')
const require = createRequire(import.meta.url)
const SERVER_BIN = process.env.INTAKE_SERVER_BIN
const KiB = 1024
const MiB = 1024 * KiB
/** The longest any single wait may take. */
const WAIT = 60_000

const sha256 = (buf) => createHash('sha256').update(buf).digest('hex')
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

let work, port, origin, server, serverLog, browser, assets

// --- The server ---------------------------------------------------------------------------------

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    })
    s.on('error', reject)
  })
}

async function startServer() {
  const log = openSync(serverLog, 'a')
  const child = spawn(SERVER_BIN, [], {
    env: {
      ...process.env,
      INTAKE_ADDR: `127.0.0.1:${port}`,
      INTAKE_DIR: join(work, 'store'),
      INTAKE_SHUTDOWN_GRACE_SECS: '2',
      NO_COLOR: '1',
    },
    stdio: ['ignore', log, log],
  })
  closeSync(log)
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })))
  const deadline = Date.now() + 30_000
  for (;;) {
    const res = await fetch(`${origin}/health`, { signal: AbortSignal.timeout(1000) }).catch(() => null)
    if (res?.ok) break
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`the server exited before answering:\n${tail()}`)
    if (Date.now() > deadline) throw new Error(`the server did not answer /health within 30 s:\n${tail()}`)
    await sleep(100)
  }
  server = { child, exited }
}

async function stopServer(signal = 'SIGTERM') {
  if (!server) return
  const { child, exited } = server
  server = null
  child.kill(signal)
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
  await exited
  clearTimeout(timer)
}

function tail() {
  try {
    return readFileSync(serverLog, 'utf8').split('\n').slice(-30).join('\n')
  } catch {
    return '(no server output)'
  }
}

// --- The page -----------------------------------------------------------------------------------

async function bundle() {
  const built = await esbuild.build({
    entryPoints: [join(HERE, 'page.mjs')],
    absWorkingDir: HERE,
    bundle: true,
    format: 'iife',
    platform: 'browser',
    target: 'chrome110',
    write: false,
    logLevel: 'silent',
  })
  const css = ['@uppy/core/css/style.min.css', '@uppy/dashboard/css/style.min.css']
    .map((name) => readFileSync(require.resolve(name), 'utf8'))
    .join('\n')
  const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Uppy → intake</title>
<link rel="stylesheet" href="uppy.css"></head>
<body><div id="uppy"></div><script src="page.js"></script></body></html>`
  return {
    'index.html': { contentType: 'text/html; charset=utf-8', body: html },
    'page.js': { contentType: 'text/javascript; charset=utf-8', body: Buffer.from(built.outputFiles[0].contents) },
    'uppy.css': { contentType: 'text/css; charset=utf-8', body: css },
  }
}

/**
 * A page showing the Uppy Dashboard, with every tus request it sends recorded (method, URL,
 * `Upload-Offset`), and its uploads throttled to `bytesPerSecond` (0: not throttled).
 */
async function openPage(bytesPerSecond) {
  const context = await browser.newContext({ viewport: { width: 900, height: 700 } })
  const page = await context.newPage()
  page.setDefaultTimeout(WAIT)
  // Served by the test, at the server's origin: the server itself never sees these requests.
  await page.route(`${origin}/uppy-test/**`, (route) => {
    const name = new URL(route.request().url()).pathname.split('/').pop() || 'index.html'
    const asset = assets[name]
    return asset ? route.fulfill({ status: 200, ...asset }) : route.fulfill({ status: 404, body: 'not found' })
  })
  const requests = []
  page.on('request', (req) => {
    if (!new URL(req.url()).pathname.includes('/upload/tus')) return
    requests.push({ method: req.method(), url: req.url(), offset: req.headers()['upload-offset'] })
  })
  // What the server answered each creation with, as sent (tus-js-client resolves it).
  const locations = []
  page.on('response', (res) => {
    if (res.request().method() === 'POST' && new URL(res.url()).pathname.includes('/upload/tus')) locations.push(res.headers().location)
  })
  const errors = []
  page.on('pageerror', (err) => errors.push(String(err)))
  const cdp = await context.newCDPSession(page)
  await cdp.send('Network.enable')
  const throttle = (rate) =>
    cdp.send('Network.emulateNetworkConditions', {
      offline: false,
      latency: 0,
      downloadThroughput: -1,
      uploadThroughput: rate > 0 ? rate : -1,
    })
  await throttle(bytesPerSecond)
  await page.goto(`${origin}/uppy-test/index.html?endpoint=/upload/tus/`)
  await page.locator('.uppy-Dashboard').waitFor()
  return { page, context, requests, locations, errors, throttle }
}

/** Adds files to the Dashboard through its file input, then presses Upload. */
async function addAndUpload(page, paths) {
  await page.locator('input.uppy-Dashboard-input[name="files[]"]:not([webkitdirectory])').first().setInputFiles(paths)
  await page.locator('.uppy-StatusBar-actionBtn--upload').click()
}

const events = (page) => page.evaluate(() => window.uppyEvents)

/** Waits until every named file has reported at least `fraction` of its bytes sent. */
async function waitForProgress(page, names, fraction) {
  await page.waitForFunction(
    ([names, fraction]) =>
      names.every((name) =>
        window.uppyEvents.some((e) => e.type === 'progress' && e.name === name && e.sent >= e.total * fraction && e.sent < e.total),
      ),
    [names, fraction],
    { timeout: WAIT, polling: 50 },
  )
}

async function waitForComplete(page) {
  await page.waitForFunction(() => window.uppyEvents.some((e) => e.type === 'complete'), null, { timeout: WAIT, polling: 100 })
  return (await events(page)).find((e) => e.type === 'complete')
}

/** A file of `size` random bytes behind a text prefix (never mistaken for an executable). */
function testFile(name, size) {
  const prefix = Buffer.from(`intake Uppy test file ${name}\n`)
  const data = Buffer.concat([prefix, randomBytes(size - prefix.length)])
  const path = join(work, 'files', name)
  writeFileSync(path, data)
  return { name, path, data }
}

async function assertStored(url, file) {
  const res = await fetch(url, { headers: { 'Tus-Resumable': '1.0.0' }, signal: AbortSignal.timeout(WAIT) })
  assert.equal(res.status, 200, `GET ${url}`)
  const got = Buffer.from(await res.arrayBuffer())
  assert.equal(got.length, file.data.length, `${file.name}: stored length`)
  assert.equal(sha256(got), sha256(file.data), `${file.name}: stored bytes`)
}

/** `POST, PATCH@0, HEAD, PATCH@1048576, …` with the server's kill or the reload marked `|`. */
function trace(requests, mark) {
  return requests.map((r, i) => `${i === mark ? '| ' : ''}${r.method}${r.offset === undefined ? '' : `@${r.offset}`}`).join(', ')
}

async function screenshot(page, name) {
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`) }).catch(() => {})
}

// --- Setup --------------------------------------------------------------------------------------

before(async () => {
  assert.ok(SERVER_BIN, 'set INTAKE_SERVER_BIN to the example server binary (tests/uppy-tus/run.sh does)')
  work = mkdtempSync(join(tmpdir(), 'intake-uppy-'))
  mkdirSync(join(work, 'files'))
  mkdirSync(ARTIFACTS, { recursive: true })
  serverLog = join(work, 'server.log')
  port = Number(process.env.UPPY_PORT) || (await freePort())
  origin = `http://127.0.0.1:${port}`
  assets = await bundle()
  await startServer()
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--disable-dev-shm-usage',
    ],
  })
})

after(async () => {
  await browser?.close()
  await stopServer()
  if (work) rmSync(work, { recursive: true, force: true })
})

// --- Tests --------------------------------------------------------------------------------------

test('two files upload with progress, and resume after the server is killed and restarted', { timeout: 180_000 }, async (t) => {
  const files = [testFile('first.bin', 3 * MiB), testFile('second.bin', 2 * MiB + 7)]
  const names = files.map((f) => f.name)
  const { page, context, requests, locations, errors } = await openPage(1 * MiB)
  t.after(() => context.close())
  try {
    await addAndUpload(page, files.map((f) => f.path))
    await waitForProgress(page, names, 0.2)

    // kill -9 mid-upload, then the same server on the same directory and port.
    const killedAt = requests.length
    await stopServer('SIGKILL')
    await startServer()

    const complete = await waitForComplete(page)
    const all = await events(page)
    assert.deepEqual({ successful: complete.successful.sort(), failed: complete.failed }, { successful: [...names].sort(), failed: [] },
      `errors: ${JSON.stringify(all.filter((e) => e.type === 'error'))}`)
    await page.locator('.uppy-StatusBar.is-complete').waitFor({ timeout: 10_000 })

    for (const file of files) {
      const progress = all.filter((e) => e.type === 'progress' && e.name === file.name)
      assert.ok(progress.length >= 5, `${file.name}: progress was reported along the way (${progress.length} events)`)
      assert.ok(progress.some((e) => e.sent > 0 && e.sent < file.data.length), `${file.name}: progress between 0 and the end`)
      assert.equal(progress.at(-1).sent, file.data.length, `${file.name}: progress ends at the file's size`)
      const success = all.find((e) => e.type === 'success' && e.name === file.name)
      assert.ok(locations.includes(success.url), `${file.name}: the server answered the absolute URL ${success.url}: ${locations}`)
      await assertStored(success.url, file)

      // Created once; after the restart Uppy asked the offset and went on from there.
      const mine = requests.filter((r) => r.url === success.url)
      const posts = requests.filter((r) => r.method === 'POST')
      assert.equal(posts.length, files.length, `one creation per file: ${JSON.stringify(requests)}`)
      const later = mine.filter((r) => requests.indexOf(r) >= killedAt)
      assert.ok(later.some((r) => r.method === 'HEAD'), `${file.name}: HEAD after the restart: ${JSON.stringify(mine)}`)
      const resumed = later.filter((r) => r.method === 'PATCH').map((r) => Number(r.offset))
      assert.ok(resumed.some((offset) => offset > 0), `${file.name}: a PATCH resumed past offset 0 after the restart: ${JSON.stringify(mine)}`)
    }
    assert.deepEqual(errors, [], 'no page errors')
    t.diagnostic(`tus requests (| = server killed): ${trace(requests, killedAt)}`)
  } catch (err) {
    await screenshot(page, 'kill-and-restart')
    throw new Error(`${err.message}\n--- server output ---\n${tail()}`, { cause: err })
  }
  await screenshot(page, 'kill-and-restart')
})

test('reload mid-upload: the same file added again resumes from the stored fingerprint', { timeout: 180_000 }, async (t) => {
  const file = testFile('third.bin', 4 * MiB + 1)
  const { page, context, requests, locations, errors, throttle } = await openPage(512 * KiB)
  t.after(() => context.close())
  try {
    await addAndUpload(page, [file.path])
    await waitForProgress(page, [file.name], 0.25)

    // Uppy (tus-js-client) remembered the upload under its fingerprint in localStorage.
    const stored = await page.evaluate(() =>
      Object.keys(localStorage).filter((k) => k.startsWith('tus::')).map((k) => JSON.parse(localStorage.getItem(k))),
    )
    assert.equal(stored.length, 1, `one upload remembered: ${JSON.stringify(stored)}`)
    const uploadUrl = stored[0].uploadUrl
    assert.deepEqual(locations, [uploadUrl], 'the remembered URL is the absolute one the server answered')
    assert.ok(uploadUrl.startsWith(`${origin}/upload/tus/`), uploadUrl)

    await page.reload()
    await page.locator('.uppy-Dashboard').waitFor()
    await throttle(0)
    const head = await fetch(uploadUrl, { method: 'HEAD', headers: { 'Tus-Resumable': '1.0.0' }, signal: AbortSignal.timeout(WAIT) })
    assert.equal(head.status, 200)
    const kept = Number(head.headers.get('upload-offset'))
    assert.ok(kept > 0 && kept < file.data.length, `the server kept part of the upload (${kept} bytes)`)

    const reloadedAt = requests.length
    await addAndUpload(page, [file.path])
    const complete = await waitForComplete(page)
    const all = await events(page)
    assert.deepEqual(complete.successful, [file.name], `errors: ${JSON.stringify(all.filter((e) => e.type === 'error'))}`)
    const success = all.find((e) => e.type === 'success')
    assert.equal(success.url, uploadUrl, 'the upload went on at the remembered URL')
    await assertStored(uploadUrl, file)

    const after = requests.slice(reloadedAt)
    assert.ok(!after.some((r) => r.method === 'POST'), `no new upload was created: ${JSON.stringify(after)}`)
    assert.equal(after[0]?.method, 'HEAD', `the offset was asked first: ${JSON.stringify(after)}`)
    const patches = after.filter((r) => r.method === 'PATCH')
    assert.ok(patches.length > 0 && Number(patches[0].offset) >= kept, `went on from offset ${kept}: ${JSON.stringify(after)}`)
    assert.deepEqual(errors, [], 'no page errors')
    t.diagnostic(`tus requests (| = page reloaded): ${trace(requests, reloadedAt)}`)
  } catch (err) {
    await screenshot(page, 'reload')
    throw new Error(`${err.message}\n--- server output ---\n${tail()}`, { cause: err })
  }
  await screenshot(page, 'reload')
})
