// Shared by the draft client tests and their child process: where the server is, test data, a
// promise around `Upload` that records every exchange, and plain HTTP helpers.
import { createHash, randomBytes } from 'node:crypto'
import { Upload } from 'tus-js-client'

/** The tus endpoint, which serves the draft too, e.g. `http://127.0.0.1:PORT/upload/tus/`. */
export function endpoint() {
  const url = process.env.INTAKE_DRAFT_URL
  if (!url) throw new Error('set INTAKE_DRAFT_URL to the tus endpoint, e.g. http://127.0.0.1:3000/upload/tus/')
  return url.endsWith('/') ? url : `${url}/`
}

/** `GET {prefix}/files/{id}`: the download route of a stored file. */
export function fileUrl(uploadUrl) {
  const id = new URL(uploadUrl).pathname.split('/').pop()
  return new URL(`../files/${id}`, endpoint()).href
}

/** `size` random bytes behind `prefix` (text by default, so nothing looks like an executable). */
export function testData(size, prefix = Buffer.from('intake draft client test data\n')) {
  return Buffer.concat([prefix, randomBytes(size - prefix.length)])
}

export const sha256 = (buf) => createHash('sha256').update(buf).digest('hex')

const SENT = ['Upload-Draft-Interop-Version', 'Upload-Complete', 'Upload-Offset', 'Upload-Length', 'Content-Type']
const GOT = ['Upload-Draft-Interop-Version', 'Upload-Complete', 'Upload-Offset', 'Upload-Limit', 'Location']

/** Records every exchange an `Upload` makes, for assertions and failure messages. */
export function tracer() {
  const exchanges = []
  return {
    exchanges,
    onAfterResponse(req, res) {
      const sent = Object.fromEntries(SENT.map((n) => [n, req.getHeader(n)]).filter(([, v]) => v != null))
      const got = Object.fromEntries(GOT.map((n) => [n, res.getHeader(n)]).filter(([, v]) => v != null))
      exchanges.push({ method: req.getMethod(), url: req.getURL(), sent, status: res.getStatus(), got, res })
    },
    toString() {
      const line = (e) => `${e.method} ${e.url} ${JSON.stringify(e.sent)} -> ${e.status} ${JSON.stringify(e.got)}`
      const lines = exchanges.map(line)
      return lines.length <= 30 ? lines.join('\n') : [...lines.slice(0, 20), '...', ...lines.slice(-10)].join('\n')
    },
  }
}

/**
 * Runs one upload to completion. Resolves `{ upload, progress, trace }`; rejects with the
 * client's error, its message followed by the exchanges. `prepare(upload)` runs before `start()`.
 */
export function runUpload(input, options, prepare = async () => {}) {
  const trace = tracer()
  const progress = []
  let upload
  const done = new Promise((resolve, reject) => {
    upload = new Upload(input, {
      endpoint: endpoint(),
      retryDelays: null,
      ...options,
      onAfterResponse: (req, res) => trace.onAfterResponse(req, res),
      onProgress: (sent, total) => progress.push([sent, total]),
      onSuccess: () => resolve(),
      onError: (err) => {
        err.message += `\nexchanges:\n${trace}`
        reject(err)
      },
    })
  })
  return prepare(upload).then(() => {
    upload.start()
    return done.then(() => ({ upload, progress, trace }))
  })
}

/** GET without any protocol header (a plain download): status, headers, bytes. */
export async function download(url) {
  const res = await fetch(url, { signal: AbortSignal.timeout(30_000) })
  return { status: res.status, headers: res.headers, body: Buffer.from(await res.arrayBuffer()) }
}

/** A request in the draft's `version`, e.g. a `HEAD` for the offset. */
export function draftRequest(url, method, version) {
  return fetch(url, { method, headers: { 'Upload-Draft-Interop-Version': version }, signal: AbortSignal.timeout(10_000) })
}

/** A message naming where two buffers first differ, or `null` when they are identical. */
export function compareBytes(actual, expected) {
  if (actual.equals(expected)) return null
  const n = Math.min(actual.length, expected.length)
  let i = 0
  while (i < n && actual[i] === expected[i]) i++
  return `got ${actual.length} bytes (sha256 ${sha256(actual)}), expected ${expected.length} (sha256 ${sha256(expected)}); first difference at byte ${i}`
}
