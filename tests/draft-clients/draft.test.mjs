// tus-js-client 5 speaking the IETF resumable-upload draft (`protocol: 'ietf-draft-03'`, interop
// version 5, and `'ietf-draft-05'`, interop version 6) to a running intake server.
//
//   INTAKE_DRAFT_URL=http://127.0.0.1:PORT/upload/tus/ node --test draft.test.mjs
//
// `bash tests/draft-clients/run.sh` starts the example server and sets it. Every upload is read
// back (from its upload URL and from `{prefix}/files/{id}`) and compared byte for byte.
//
// Two things of tus-js-client 5.0.0-pre2 these tests know about:
// - With `uploadDataDuringCreation` and 'ietf-draft-05' it labels the creation request
//   `Content-Type: application/partial-upload`, the media type of appends; intake ignores that
//   label on a creation (otherwise a PNG would be refused as not matching its declared type).
// - After a `HEAD` that fails (the upload is gone), it creates and completes a new upload, then
//   goes on reading the failed `HEAD` answer and errors (tus/tus-js-client#895, fix proposed in
//   #908). The resume test resumes an upload that exists, so it never takes that path.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { createReadStream, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { Upload } from 'tus-js-client'
import { FileUrlStorage } from 'tus-js-client/node/FileUrlStorage'
import { compareBytes, download, draftRequest, endpoint, fileUrl, runUpload, sha256, testData } from './helpers.mjs'

const HERE = fileURLToPath(new URL('.', import.meta.url))
const KiB = 1024
const MiB = 1024 * KiB
const PNG = Buffer.from('89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489', 'hex')

let work
before(() => {
  endpoint()
  work = mkdtempSync(join(tmpdir(), 'intake-draft-clients-'))
})
after(() => rmSync(work, { recursive: true, force: true }))

function assertSameBytes(actual, expected, trace) {
  const diff = compareBytes(actual, expected)
  assert.equal(diff, null, `${diff}\nexchanges:\n${trace ?? ''}`)
}

/** Both downloads of a finished upload give back exactly `data`. */
async function assertStored(url, data, trace) {
  for (const where of [url, fileUrl(url)]) {
    const got = await download(where)
    assert.equal(got.status, 200, `GET ${where} -> ${got.status}: ${got.body.toString('utf8', 0, 300)}`)
    assertSameBytes(got.body, data, trace)
  }
}

/** Each append starts where the answer before it (HEAD or PATCH) left the upload. */
function assertContiguous(trace) {
  let offset = null
  for (const e of trace.exchanges) {
    if (e.method === 'PATCH') {
      if (offset != null) assert.equal(e.sent['Upload-Offset'], offset, `PATCH at the offset last answered\n${trace}`)
    }
    if (e.got['Upload-Offset'] != null) offset = e.got['Upload-Offset']
  }
}

const PROTOCOLS = [
  // Draft -03: no media type for appends, no Upload-Limit.
  { protocol: 'ietf-draft-03', version: '5', appendType: undefined, lifetime: null },
  // Drafts -04/-05: appends are application/partial-upload; Upload-Limit names the lifetime `expires`.
  { protocol: 'ietf-draft-05', version: '6', appendType: 'application/partial-upload', lifetime: 'expires' },
]

for (const { protocol, version, appendType, lifetime } of PROTOCOLS) {
  describe(`${protocol} (interop version ${version})`, () => {
    test('one upload, read back byte for byte', { timeout: 60_000 }, async () => {
      const data = testData(MiB + 321)
      const { upload, trace } = await runUpload(data, {
        protocol,
        // The draft names a file the HTTP way; tus-js-client's Upload-Metadata is tus only.
        headers: { 'Content-Disposition': 'attachment; filename="report.bin"' },
      })
      assert.deepEqual(
        trace.exchanges.map((e) => `${e.method} ${e.status}`),
        ['POST 201', 'PATCH 200'],
        `a careful creation, then one append that completes the upload\n${trace}`,
      )
      const [post, patch] = trace.exchanges
      for (const e of trace.exchanges) {
        assert.equal(e.sent['Upload-Draft-Interop-Version'], version, `the client speaks version ${version}`)
        assert.equal(e.got['Upload-Draft-Interop-Version'], version, `the server answers in it\n${trace}`)
      }
      assert.equal(post.sent['Upload-Complete'], '?0')
      assert.equal(post.got['Upload-Complete'], '?0')
      assert.equal(post.got['Upload-Offset'], '0')
      if (lifetime) {
        assert.match(post.got['Upload-Limit'] ?? '', new RegExp(`^min-size=0, max-size=\\d+, ${lifetime}=\\d+$`), `${trace}`)
      } else {
        assert.equal(post.got['Upload-Limit'], undefined, `draft -03 has no Upload-Limit\n${trace}`)
      }
      assert.equal(patch.sent['Content-Type'], appendType)
      assert.equal(patch.sent['Upload-Complete'], '?1')
      assert.equal(patch.got['Upload-Complete'], '?1')
      assert.equal(patch.got['Upload-Offset'], String(data.length))
      // The final answer describes the stored file, as /upload/raw would.
      const stored = JSON.parse(patch.res.getBody()).files[0]
      assert.equal(stored.size, data.length)
      assert.equal(stored.sha256, sha256(data))
      assert.equal(stored.name, 'report.bin')
      assert.equal(new URL(stored.url, endpoint()).href, fileUrl(upload.url))
      await assertStored(upload.url, data, trace)
      const named = await download(fileUrl(upload.url))
      assert.match(named.headers.get('content-disposition') ?? '', /report\.bin/)
    })

    test('an upload in 256 KiB chunks', { timeout: 60_000 }, async () => {
      const data = testData(MiB + 512 * KiB + 7)
      const { upload, trace } = await runUpload(data, { protocol, chunkSize: 256 * KiB })
      const patches = trace.exchanges.filter((e) => e.method === 'PATCH')
      assert.equal(patches.length, Math.ceil(data.length / (256 * KiB)), `${trace}`)
      for (const p of patches.slice(0, -1)) {
        // Drafts -03 to -05: an append that leaves the upload incomplete answers 201 Created.
        assert.equal(p.status, 201, `${trace}`)
        assert.equal(p.sent['Upload-Complete'], '?0')
        assert.equal(p.got['Upload-Complete'], '?0')
        assert.equal(p.sent['Content-Type'], appendType)
      }
      const last = patches.at(-1)
      assert.equal(last.status, 200)
      assert.equal(last.got['Upload-Complete'], '?1')
      assert.equal(last.got['Upload-Offset'], String(data.length))
      assertContiguous(trace)
      await assertStored(upload.url, data, trace)
    })

    test('the first chunk in the creation request (uploadDataDuringCreation)', { timeout: 60_000 }, async () => {
      const data = testData(MiB + 5, PNG)
      const { upload, trace } = await runUpload(data, { protocol, chunkSize: 512 * KiB, uploadDataDuringCreation: true })
      const post = trace.exchanges[0]
      assert.equal(post.method, 'POST')
      assert.equal(post.status, 201, `${trace}`)
      assert.equal(post.sent['Upload-Complete'], '?0')
      assert.equal(post.got['Upload-Offset'], String(512 * KiB), `the creation stored its bytes\n${trace}`)
      assertContiguous(trace)
      await assertStored(upload.url, data, trace)
      // The file's bytes decide its type, not the label the client put on the creation request.
      const got = await download(fileUrl(upload.url))
      assert.equal(got.headers.get('content-type'), 'image/png', `${trace}`)
    })

    test('killed mid-upload, resumed by a new process from the URL storage', { timeout: 90_000 }, async (t) => {
      const data = testData(4 * MiB + 777)
      const file = join(work, `resume-${version}.bin`)
      writeFileSync(file, data)
      const storagePath = join(work, `url-storage-${version}.json`)
      const chunkSize = 512 * KiB

      // 1. A child process uploads in 512 KiB chunks and SIGKILLs itself once past 40 %.
      const child = spawn(process.execPath, [join(HERE, 'resume-child.mjs'), file, storagePath, protocol, '0.4', String(chunkSize)], {
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

      // 2. The server kept what it had received, and says so in the draft's terms.
      const before = await draftRequest(killed.url, 'HEAD', version)
      assert.equal(before.status, 204, `HEAD ${killed.url} after the client died -> ${before.status}`)
      assert.equal(before.headers.get('upload-draft-interop-version'), version)
      assert.equal(before.headers.get('upload-complete'), '?0')
      assert.equal(before.headers.get('upload-length'), String(data.length))
      const serverOffset = Number(before.headers.get('upload-offset'))
      assert.ok(serverOffset > 0 && serverOffset < data.length, `Upload-Offset after the kill: ${serverOffset}`)

      // 3. A fresh client finds the upload through the same URL storage and resumes it.
      let previous
      const { upload, progress, trace } = await runUpload(
        createReadStream(file),
        {
          protocol,
          chunkSize,
          urlStorage: new FileUrlStorage(storagePath),
          storeFingerprintForResuming: true,
          // A 409 or 423 is worth a retry should the killed append still be settling.
          retryDelays: [200, 1000],
        },
        async (u) => {
          const found = await u.findPreviousUploads()
          assert.equal(found.length, 1, `one previous upload in the URL storage: ${JSON.stringify(found)}`)
          previous = found[0]
          u.resumeFromPreviousUpload(previous)
        },
      )
      const retried = trace.exchanges.filter((e) => e.status >= 400).map((e) => `${e.method} -> ${e.status}`)
      if (retried.length) t.diagnostic(`the resumed client retried after: ${retried.join(', ')}`)
      assert.equal(upload.url, killed.url, 'the resumed upload keeps its URL')
      assert.ok(!trace.exchanges.some((e) => e.method === 'POST'), `resuming creates no new upload\n${trace}`)
      const [headed] = trace.exchanges
      assert.equal(headed.method, 'HEAD')
      assert.equal(headed.got['Upload-Offset'], String(serverOffset), `${trace}`)
      // Nothing below the server's offset is sent again: the appends start there and follow on.
      const patches = trace.exchanges.filter((e) => e.method === 'PATCH' && e.status < 300)
      assert.equal(patches[0].sent['Upload-Offset'], String(serverOffset), `${trace}`)
      assertContiguous(trace)
      const appended = patches.reduce((n, p) => n + Number(p.got['Upload-Offset']) - Number(p.sent['Upload-Offset']), 0)
      assert.equal(appended, data.length - serverOffset, `the appends carried exactly the missing bytes\n${trace}`)
      assert.ok(progress[0][0] >= serverOffset, `resumed from the server's offset (first progress ${progress[0]})`)
      assert.equal(patches.at(-1).got['Upload-Complete'], '?1')
      await assertStored(upload.url, data, trace)
    })

    test('cancellation: Upload.terminate, then the upload is gone', { timeout: 30_000 }, async () => {
      const data = testData(MiB)
      const url = await new Promise((resolve, reject) => {
        const upload = new Upload(data, {
          endpoint: endpoint(),
          protocol,
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
      const before = await draftRequest(url, 'HEAD', version)
      assert.equal(before.status, 204)
      assert.equal(before.headers.get('upload-offset'), String(256 * KiB))
      await Upload.terminate(url, { protocol, retryDelays: null }) // throws unless 204
      const gone = await draftRequest(url, 'HEAD', version)
      assert.equal(gone.status, 404, `HEAD after the cancellation -> ${gone.status}`)
      assert.equal((await download(fileUrl(url))).status, 404)
    })
  })
}
