// tus-js-client (the reference tus client) against a running intake server's tus endpoint.
//
//   INTAKE_TUS_URL=http://127.0.0.1:PORT/upload/tus/ [INTAKE_TUS_MAX_SIZE=bytes] node --test tus-js.test.mjs
//
// `bash tests/tus-clients/run.sh` starts the example server and sets both. Every upload is
// checked by downloading it again (GET on the upload URL) and comparing bytes.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync, createReadStream } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { after, before, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { FileUrlStorage, Upload } from 'tus-js-client'
import {
  TUS,
  compareBytes,
  decodeMetadata,
  download,
  endpoint,
  expectFailure,
  head,
  runUpload,
  testData,
  tracer,
} from './helpers.mjs'

const KiB = 1024
const MiB = 1024 * KiB
const HERE = fileURLToPath(new URL('.', import.meta.url))
const EXTENSIONS = [
  'creation',
  'creation-with-upload',
  'creation-defer-length',
  'expiration',
  'checksum',
  'termination',
  'concatenation',
]

let work
before(() => {
  work = mkdtempSync(join(tmpdir(), 'intake-tus-js-'))
})
after(() => rmSync(work, { recursive: true, force: true }))

function assertSameBytes(actual, expected, trace) {
  const diff = compareBytes(actual, expected)
  assert.equal(diff, null, `downloaded bytes differ: ${diff}\nrequests:\n${trace ?? ''}`)
}

/** HEAD on a finished upload: offset = length = size, no caching, the tus version. */
async function assertComplete(url, size) {
  const res = await head(url)
  assert.equal(res.status, 200, `HEAD ${url} -> ${res.status}`)
  assert.equal(res.headers.get('tus-resumable'), '1.0.0', 'HEAD answers with Tus-Resumable')
  assert.equal(res.headers.get('upload-offset'), String(size), 'HEAD Upload-Offset of a finished upload')
  assert.equal(res.headers.get('upload-length'), String(size), 'HEAD Upload-Length of a finished upload')
  assert.match(res.headers.get('cache-control') ?? '', /no-store/, 'HEAD must carry Cache-Control: no-store')
  return res
}

/** An ELF header (recognised by magic bytes) padded to `size` bytes. */
function elfBinary(size) {
  const buf = Buffer.alloc(size, 0x41)
  Buffer.from([0x7f, 0x45, 0x4c, 0x46, 0x02, 0x01, 0x01, 0x00]).copy(buf, 0)
  buf.fill(0, 8, 64)
  buf.writeUInt16LE(2, 16) // e_type: executable
  buf.writeUInt16LE(0x3e, 18) // e_machine: x86-64
  return buf
}

/** Uploads `data`, which the server must refuse with 415 executable_content, leaving nothing. */
async function assertRefusedAsExecutable(data, options) {
  const err = await expectFailure(data, options)
  const status = err.originalResponse?.getStatus()
  assert.equal(status, 415, `onError gets the server's 415: ${err.message}`)
  const body = err.originalResponse.getBody() ?? ''
  assert.match(body, /executable_content/, `the problem document names the reason: ${body}`)
  const post = err.trace.responses.findLast((r) => r.method === 'POST')
  if (post?.status === 201) await assertNotDownloadable(new URL(post.res.getHeader('Location'), endpoint()).href)
}

/** Asserts a refused upload left nothing that can be downloaded. */
async function assertNotDownloadable(url) {
  const res = await fetch(url, { headers: TUS, signal: AbortSignal.timeout(10_000) })
  await res.arrayBuffer()
  assert.ok(res.status >= 400, `GET ${url} of a refused upload -> ${res.status}, expected an error status`)
}

test('OPTIONS advertises tus 1.0.0, every extension and the size limit', async () => {
  const res = await fetch(endpoint(), { method: 'OPTIONS', signal: AbortSignal.timeout(10_000) })
  assert.ok([200, 204].includes(res.status), `OPTIONS ${endpoint()} -> ${res.status}`)
  assert.equal(res.headers.get('tus-resumable'), '1.0.0')
  assert.ok((res.headers.get('tus-version') ?? '').split(',').map((v) => v.trim()).includes('1.0.0'), 'Tus-Version lists 1.0.0')
  const extensions = (res.headers.get('tus-extension') ?? '').split(',').map((e) => e.trim())
  for (const ext of EXTENSIONS) assert.ok(extensions.includes(ext), `Tus-Extension lists ${ext}: ${extensions}`)
  const algorithms = (res.headers.get('tus-checksum-algorithm') ?? '').split(',').map((a) => a.trim())
  assert.ok(algorithms.includes('sha1'), `Tus-Checksum-Algorithm lists sha1 (required by the checksum extension): ${algorithms}`)
  if (process.env.INTAKE_TUS_MAX_SIZE) {
    assert.equal(res.headers.get('tus-max-size'), process.env.INTAKE_TUS_MAX_SIZE, 'Tus-Max-Size is the configured limit')
  }
})

test('a 3 MiB file in 256 KiB chunks round-trips bytes and metadata', { timeout: 60_000 }, async () => {
  const data = testData(3 * MiB + 4321)
  const chunkSize = 256 * KiB
  const filename = 'données aléatoires 1.bin'
  const { upload, progress, chunks, trace } = await runUpload(data, {
    chunkSize,
    metadata: { filename, filetype: 'application/octet-stream' },
  })
  assert.ok(upload.url?.startsWith('http'), `upload.url is an absolute URL: ${upload.url}`)
  assert.equal(chunks.length, Math.ceil(data.length / chunkSize), `one accepted PATCH per chunk\n${trace}`)
  assert.deepEqual(chunks.at(-1).slice(1), [data.length, data.length])
  assert.ok(progress.every(([sent, total]) => sent <= total && total === data.length), 'progress stays within the size')
  assert.deepEqual(progress.at(-1), [data.length, data.length])

  const post = trace.responses.find((r) => r.method === 'POST')
  assert.equal(post.status, 201, 'creation answers 201 Created')
  // Expiration: every PATCH response of an upload that will expire carries Upload-Expires.
  const patches = trace.responses.filter((r) => r.method === 'PATCH')
  for (const p of patches.slice(0, -1)) {
    const expires = p.res.getHeader('Upload-Expires')
    assert.ok(expires, `PATCH responses of an unfinished upload carry Upload-Expires\n${trace}`)
    assert.ok(Date.parse(expires) > Date.now(), `Upload-Expires is an HTTP date in the future: ${expires}`)
  }
  for (const p of patches) assert.equal(p.status, 204, `PATCH answers 204 No Content\n${trace}`)

  const res = await assertComplete(upload.url, data.length)
  const meta = decodeMetadata(res.headers.get('upload-metadata'))
  assert.equal(meta.filename, filename, `Upload-Metadata filename round-trips: ${res.headers.get('upload-metadata')}`)
  assert.equal(meta.filetype, 'application/octet-stream')
  assertSameBytes(await download(upload.url), data, trace)
})

test('creation-with-upload: the POST carries the first chunk', { timeout: 60_000 }, async () => {
  const data = testData(2 * MiB + 99)
  const { upload, trace } = await runUpload(data, {
    chunkSize: MiB,
    uploadDataDuringCreation: true,
    metadata: { filename: 'with-creation.bin' },
  })
  const post = trace.responses.find((r) => r.method === 'POST')
  assert.equal(post.status, 201)
  assert.equal(post.res.getHeader('Upload-Offset'), String(MiB), `the POST response tells the offset after its body\n${trace}`)
  assert.equal(trace.responses.filter((r) => r.method === 'PATCH').length, 2, `two PATCHes after the POST\n${trace}`)
  await assertComplete(upload.url, data.length)
  assertSameBytes(await download(upload.url), data, trace)
})

test('an upload killed at 40 % resumes from a new process and completes', { timeout: 90_000 }, async (t) => {
  const data = testData(8 * MiB + 777)
  const file = join(work, 'resume.bin')
  writeFileSync(file, data)
  const storagePath = join(work, 'tus-url-storage.json')

  // 1. A child process uploads in 512 KiB chunks and SIGKILLs itself once past 40 %.
  const child = spawn(process.execPath, [join(HERE, 'resume-child.mjs'), file, storagePath, '0.4', String(512 * KiB)], {
    env: process.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  let err = ''
  child.stdout.on('data', (d) => (out += d))
  child.stderr.on('data', (d) => (err += d))
  const killer = setTimeout(() => child.kill('SIGKILL'), 60_000)
  const [code, signal] = await new Promise((resolve) => child.on('exit', (c, s) => resolve([c, s])))
  clearTimeout(killer)
  assert.equal(signal, 'SIGKILL', `the child dies by SIGKILL (exit ${code}); stdout: ${out} stderr: ${err}`)
  const killed = JSON.parse(out.trim().split('\n').at(-1))
  assert.ok(killed.url, `the child had an upload URL: ${out}`)
  assert.ok(killed.sent > data.length * 0.4 && killed.sent < data.length, `killed mid-upload: ${out}`)

  // 2. The server kept what it had received.
  const before = await head(killed.url)
  assert.equal(before.status, 200, `HEAD ${killed.url} after the client died -> ${before.status}`)
  const serverOffset = Number(before.headers.get('upload-offset'))
  assert.ok(serverOffset > 0 && serverOffset < data.length, `Upload-Offset after the kill: ${serverOffset}`)
  assert.equal(before.headers.get('upload-length'), String(data.length))

  // 3. A fresh client finds the upload through the same URL storage and resumes it.
  const storage = new FileUrlStorage(storagePath)
  let previous
  const { upload, progress, trace } = await runUpload(
    createReadStream(file),
    {
      chunkSize: 512 * KiB,
      urlStorage: storage,
      storeFingerprintForResuming: true,
      // The killed PATCH may still be settling on the server: a 409 or 423 is worth a retry.
      retryDelays: [100, 500, 1000],
      metadata: { filename: 'resumed.bin', filetype: 'application/octet-stream' },
    },
    async (u) => {
      const found = await u.findPreviousUploads()
      assert.equal(found.length, 1, `one previous upload in the URL storage: ${JSON.stringify(found)}`)
      previous = found[0]
      u.resumeFromPreviousUpload(previous)
    },
  )
  const retried = trace.responses.filter((r) => r.status >= 400).map((r) => `${r.method} -> ${r.status}`)
  if (retried.length) t.diagnostic(`the resumed client retried after: ${retried.join(', ')}`)
  assert.equal(upload.url, killed.url, 'the resumed upload keeps its URL')
  assert.equal(previous.uploadUrl, killed.url)
  assert.ok(!trace.responses.some((r) => r.method === 'POST'), `resuming creates no new upload\n${trace}`)
  assert.ok(progress[0][0] > 0, `the resumed upload starts at an offset > 0 (first progress ${progress[0]})\n${trace}`)
  assert.ok(progress[0][0] >= serverOffset, `resumed from at least the offset HEAD reported (${serverOffset})\n${trace}`)
  await assertComplete(upload.url, data.length)
  assertSameBytes(await download(upload.url), data, trace)
})

test('parallelUploads: 3 partial uploads concatenated into a final one', { timeout: 60_000 }, async () => {
  const data = testData(3 * MiB + 12345)
  const filename = 'concatenated.bin'
  const { upload, trace } = await runUpload(data, {
    parallelUploads: 3,
    chunkSize: 512 * KiB,
    metadata: { filename, filetype: 'application/octet-stream' },
  })
  const posts = trace.responses.filter((r) => r.method === 'POST')
  assert.equal(posts.length, 4, `three partial uploads and one final\n${trace}`)
  assert.ok(posts.every((p) => p.status === 201), `every creation answers 201\n${trace}`)
  // The partial uploads, in the order the final upload's creation request listed them.
  const sent = posts[3].req.getHeader('Upload-Concat')
  assert.match(sent, /^final;/)
  const partials = sent.slice('final;'.length).trim().split(/\s+/)
  assert.equal(partials.length, 3)
  for (const url of partials) {
    const partial = await head(url)
    assert.equal(partial.status, 200, `HEAD ${url}`)
    assert.equal(partial.headers.get('upload-concat'), 'partial', 'HEAD on a partial upload carries Upload-Concat: partial')
  }

  const res = await assertComplete(upload.url, data.length)
  const concat = res.headers.get('upload-concat') ?? ''
  assert.match(concat, /^final;/, `HEAD on the final upload carries Upload-Concat: final;...: ${concat}`)
  const listed = concat.slice('final;'.length).trim().split(/\s+/).map((u) => new URL(u, endpoint()).pathname)
  assert.deepEqual(listed, partials.map((u) => new URL(u).pathname), 'Upload-Concat lists the partial uploads in order')
  assert.equal(decodeMetadata(res.headers.get('upload-metadata')).filename, filename, 'the final upload keeps its metadata')

  // A final upload is never appended to.
  const patch = await fetch(upload.url, {
    method: 'PATCH',
    headers: { ...TUS, 'Upload-Offset': String(data.length), 'Content-Type': 'application/offset+octet-stream' },
    body: Buffer.from('more'),
    signal: AbortSignal.timeout(10_000),
  })
  await patch.arrayBuffer()
  assert.equal(patch.status, 403, 'PATCH on a final upload answers 403 Forbidden')

  assertSameBytes(await download(upload.url), data, trace)
})

test('a parallel upload aborted midway resumes its partial uploads from the URL storage', { timeout: 60_000 }, async () => {
  const data = testData(4 * MiB + 1)
  const urlStorage = new FileUrlStorage(join(work, 'parallel-url-storage.json'))
  const options = {
    parallelUploads: 2,
    chunkSize: 256 * KiB,
    urlStorage,
    storeFingerprintForResuming: true,
    metadata: { filename: 'parallel-resumed.bin' },
  }
  // 1. Abort (without terminating) once 40 % has been accepted.
  const first = tracer()
  await new Promise((resolve, reject) => {
    let accepted = 0
    const upload = new Upload(data, {
      endpoint: endpoint(),
      retryDelays: null,
      ...options,
      onAfterResponse: first.onAfterResponse,
      onChunkComplete: (size) => {
        accepted += size
        if (accepted > data.length * 0.4) upload.abort().then(resolve, reject)
      },
      onError: reject,
      onSuccess: () => reject(new Error('the upload finished before it could be aborted')),
    })
    upload.start()
  })
  const partials = first.responses.filter((r) => r.method === 'POST').map((r) => new URL(r.res.getHeader('Location'), endpoint()).href)
  assert.equal(partials.length, 2, `two partial uploads were created\n${first}`)

  // 2. A fresh Upload finds both partial URLs and finishes them, then creates the final upload.
  let previous
  const { upload, trace } = await runUpload(data, options, async (u) => {
    const found = await u.findPreviousUploads()
    assert.equal(found.length, 1, `one previous upload in the URL storage: ${JSON.stringify(found)}`)
    previous = found[0]
    u.resumeFromPreviousUpload(previous)
  })
  assert.deepEqual([...previous.parallelUploadUrls].sort(), [...partials].sort(), 'the storage kept both partial URLs')
  const heads = trace.responses.filter((r) => r.method === 'HEAD')
  assert.equal(heads.length, 2, `each partial upload is resumed with a HEAD\n${trace}`)
  const posts = trace.responses.filter((r) => r.method === 'POST')
  assert.equal(posts.length, 1, `only the final upload is created\n${trace}`)
  assert.match(posts[0].req.getHeader('Upload-Concat'), /^final;/)
  await assertComplete(upload.url, data.length)
  assertSameBytes(await download(upload.url), data, trace)
})

test('overridePatchMethod: POST with X-HTTP-Method-Override: PATCH', { timeout: 30_000 }, async () => {
  const data = testData(MiB + 3)
  const { upload, trace } = await runUpload(data, { chunkSize: 256 * KiB, overridePatchMethod: true, metadata: { filename: 'override.bin' } })
  assert.equal(trace.responses.filter((r) => r.method === 'POST').length, 1 + Math.ceil(data.length / (256 * KiB)), `${trace}`)
  await assertComplete(upload.url, data.length)
  assertSameBytes(await download(upload.url), data, trace)
})

test('the upload URL is a plain download link: GET needs no tus headers', { timeout: 30_000 }, async () => {
  const data = testData(100 * KiB)
  const { upload, trace } = await runUpload(data, { metadata: { filename: 'link.bin' } })
  // A browser following the link sends no Tus-Resumable header; GET is not part of tus.
  const res = await fetch(upload.url, { signal: AbortSignal.timeout(10_000) })
  const body = Buffer.from(await res.arrayBuffer())
  assert.equal(res.status, 200, `GET ${upload.url} without Tus-Resumable -> ${res.status}: ${body.toString('utf8', 0, 300)}\n${trace}`)
  assertSameBytes(body, data, trace)
})

test('a download is served with the type sniffing settled on and the metadata filename', { timeout: 30_000 }, async () => {
  const text = Buffer.from('plain notes, uploaded over tus\n'.repeat(100))
  const { upload } = await runUpload(text, { metadata: { filename: 'notes.txt' } })
  const res = await fetch(upload.url, { headers: TUS, signal: AbortSignal.timeout(10_000) })
  assertSameBytes(Buffer.from(await res.arrayBuffer()), text)
  // No filetype was declared: as for /upload/raw?name=notes.txt, the type comes from the extension.
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain/, `Content-Type of notes.txt: ${res.headers.get('content-type')}`)
  assert.match(res.headers.get('content-disposition') ?? '', /notes\.txt/, 'Content-Disposition names the file')
})

test('uploadLengthDeferred with a stream: the length arrives with the last chunk', { timeout: 60_000 }, async () => {
  const data = testData(2 * MiB + 54321)
  // A byte stream (not object mode) that trickles the data in 100 KiB pieces.
  const pieces = []
  for (let i = 0; i < data.length; i += 100 * KiB) pieces.push(data.subarray(i, i + 100 * KiB))
  const stream = Readable.from(pieces, { objectMode: false })
  const { upload, trace } = await runUpload(stream, {
    uploadLengthDeferred: true,
    chunkSize: 256 * KiB,
    metadata: { filename: 'deferred.bin', filetype: 'application/octet-stream' },
  })
  const post = trace.lines.find((l) => l.startsWith('POST'))
  assert.match(post, /Upload-Defer-Length: 1/, 'the upload was created with Upload-Defer-Length: 1')
  const withLength = trace.lines.filter((l) => l.startsWith('PATCH') && l.includes('Upload-Length'))
  assert.equal(withLength.length, 1, `exactly one PATCH declares the length\n${trace}`)
  await assertComplete(upload.url, data.length)
  assertSameBytes(await download(upload.url), data, trace)
})

test('termination: DELETE removes an unfinished upload', { timeout: 30_000 }, async () => {
  const data = testData(MiB)
  const url = await new Promise((resolve, reject) => {
    const upload = new Upload(data, {
      endpoint: endpoint(),
      chunkSize: 256 * KiB,
      retryDelays: null,
      onChunkComplete: (_size, accepted) => {
        if (accepted >= 256 * KiB) upload.abort().then(() => resolve(upload.url), reject)
      },
      onError: reject,
      onSuccess: () => reject(new Error('the upload finished before it could be aborted')),
    })
    upload.start()
  })
  const before = await head(url)
  assert.equal(before.status, 200)
  assert.equal(before.headers.get('upload-offset'), String(256 * KiB))
  await Upload.terminate(url, { retryDelays: null }) // throws unless 204
  const afterHead = await head(url)
  assert.ok([404, 410].includes(afterHead.status), `HEAD after termination -> ${afterHead.status}, expected 404 or 410`)
  assert.equal(afterHead.headers.get('upload-offset'), null, 'no Upload-Offset for a terminated upload')
  await assertNotDownloadable(url)
})

test('an ELF binary declared as cat.png is refused with 415', { timeout: 30_000 }, async (t) => {
  const metadata = { filename: 'cat.png', filetype: 'image/png' }
  const cases = [
    ['in one PATCH', { metadata }],
    ['in 1 KiB chunks, smaller than the sniffing window', { metadata, chunkSize: KiB }],
    ['in the creation request (creation-with-upload)', { metadata, uploadDataDuringCreation: true }],
    // The partial uploads carry no metadata; the final upload names the file, so the server must
    // sniff when it assembles them.
    ['split across parallel partial uploads', { metadata, parallelUploads: 2 }],
  ]
  for (const [name, options] of cases) {
    await t.test(name, () => assertRefusedAsExecutable(elfBinary(16 * KiB), options))
  }
})

test('an ELF binary declared as notes.txt is refused even when its first chunk is tiny', { timeout: 30_000 }, async () => {
  // /upload/raw?name=notes.txt refuses this file. Over tus, a first PATCH of 32 bytes is too
  // short for any magic-bytes check, so the decision must wait for the upload's first bytes
  // (the sniffing window), not end with the first request.
  await assertRefusedAsExecutable(elfBinary(4 * KiB), { metadata: { filename: 'notes.txt' }, chunkSize: 32 })
})

test('an upload declared larger than the server limit is refused with 413', { timeout: 30_000 }, async () => {
  let max = Number(process.env.INTAKE_TUS_MAX_SIZE)
  if (!max) {
    const res = await fetch(endpoint(), { method: 'OPTIONS' })
    max = Number(res.headers.get('tus-max-size'))
  }
  assert.ok(max > 0, 'the limit is known (INTAKE_TUS_MAX_SIZE or Tus-Max-Size)')
  // The stream is never read: the declared length alone must be refused.
  const stream = new Readable({ read() {} })
  const err = await expectFailure(stream, { uploadSize: max + 1, chunkSize: MiB, metadata: { filename: 'huge.bin' } })
  stream.destroy()
  assert.equal(err.originalResponse?.getStatus(), 413, `onError gets the server's 413: ${err.message}`)
  assert.equal(err.originalRequest.getMethod(), 'POST', 'refused at creation, before any data')
  assert.match(err.originalResponse.getBody() ?? '', /body_too_large/, 'the problem document names the reason')
})
