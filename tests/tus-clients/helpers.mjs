// Shared by the tus-js-client tests and their child processes: test data, a promise around
// `Upload`, a request trace for failure messages, and plain HTTP helpers for checking results.
import { createHash, randomBytes } from 'node:crypto'
import { Upload } from 'tus-js-client'

/** The tus endpoint under test, e.g. `http://127.0.0.1:PORT/upload/tus/`. */
export function endpoint() {
  const url = process.env.INTAKE_TUS_URL
  if (!url) throw new Error('set INTAKE_TUS_URL to the tus endpoint, e.g. http://127.0.0.1:3000/upload/tus/')
  return url.endsWith('/') ? url : `${url}/`
}

/** The header every tus request carries. */
export const TUS = { 'Tus-Resumable': '1.0.0' }

/**
 * `size` bytes of random data behind a fixed text prefix, so no run can by chance start with the
 * magic bytes of an executable (which content sniffing would rightly refuse).
 */
export function testData(size) {
  const prefix = Buffer.from('intake tus client test data\n')
  return Buffer.concat([prefix, randomBytes(size - prefix.length)])
}

export const sha256 = (buf) => createHash('sha256').update(buf).digest('hex')

/** Records every request an `Upload` makes, for assertion messages. */
export function tracer() {
  const lines = []
  const responses = []
  return {
    lines,
    responses,
    onAfterResponse(req, res) {
      const h = (name) => req.getHeader(name)
      const sent = ['Upload-Offset', 'Upload-Length', 'Upload-Defer-Length', 'Upload-Concat']
        .filter((n) => h(n) != null)
        .map((n) => `${n}: ${h(n)}`)
      const got = ['Upload-Offset', 'Upload-Length', 'Location', 'Upload-Expires']
        .filter((n) => res.getHeader(n) != null)
        .map((n) => `${n}: ${res.getHeader(n)}`)
      lines.push(`${req.getMethod()} ${req.getURL()} [${sent.join(', ')}] -> ${res.getStatus()} [${got.join(', ')}]`)
      responses.push({ method: req.getMethod(), url: req.getURL(), status: res.getStatus(), req, res })
    },
    toString() {
      if (lines.length <= 30) return lines.join('\n')
      return [...lines.slice(0, 20), `... ${lines.length - 30} more ...`, ...lines.slice(-10)].join('\n')
    },
  }
}

/**
 * Runs one upload to completion. Resolves `{ upload, progress, chunks, trace }`; rejects with the
 * client's error, whose message gets the request trace appended. `prepare(upload)` may run
 * before `start()` (e.g. to resume from a previous upload).
 */
export function runUpload(input, options = {}, prepare = async () => {}) {
  const trace = tracer()
  const progress = []
  const chunks = []
  let upload
  const done = new Promise((resolve, reject) => {
    upload = new Upload(input, {
      endpoint: endpoint(),
      retryDelays: null,
      ...options,
      onAfterResponse: (req, res) => {
        trace.onAfterResponse(req, res)
        options.onAfterResponse?.(req, res)
      },
      onProgress: (sent, total) => {
        progress.push([sent, total])
        options.onProgress?.(sent, total)
      },
      onChunkComplete: (size, accepted, total) => chunks.push([size, accepted, total]),
      onSuccess: () => resolve(),
      onError: (err) => {
        err.trace = trace
        err.message += `\nrequests:\n${trace}`
        reject(err)
      },
    })
  })
  return prepare(upload).then(() => {
    upload.start()
    return done.then(() => ({ upload, progress, chunks, trace }))
  })
}

/** Runs an upload that must fail; resolves the error (with `.trace`), rejects if it succeeded. */
export async function expectFailure(input, options = {}) {
  try {
    const { trace } = await runUpload(input, options)
    throw new Error(`the upload was accepted but should have been refused\nrequests:\n${trace}`)
  } catch (err) {
    if (err.trace) return err
    throw err
  }
}

/** GET on an upload URL: the stored bytes. */
export async function download(url) {
  const res = await fetch(url, { headers: TUS, signal: AbortSignal.timeout(30_000) })
  const body = Buffer.from(await res.arrayBuffer())
  if (res.status !== 200) {
    throw new Error(`GET ${url} -> ${res.status} ${res.headers.get('content-type')}: ${body.toString('utf8', 0, 500)}`)
  }
  return body
}

/** HEAD on an upload URL. */
export function head(url) {
  return fetch(url, { method: 'HEAD', headers: TUS, signal: AbortSignal.timeout(10_000) })
}

/** Decodes an `Upload-Metadata` header into an object of UTF-8 strings (`null` for a key alone). */
export function decodeMetadata(header) {
  const out = {}
  for (const pair of (header ?? '').split(',')) {
    const [key, value] = pair.trim().split(' ')
    if (key) out[key] = value == null ? null : Buffer.from(value, 'base64').toString('utf8')
  }
  return out
}

/** A message naming where two buffers first differ, or `null` when they are identical. */
export function compareBytes(actual, expected) {
  if (actual.equals(expected)) return null
  const n = Math.min(actual.length, expected.length)
  let i = 0
  while (i < n && actual[i] === expected[i]) i++
  return `got ${actual.length} bytes (sha256 ${sha256(actual)}), expected ${expected.length} (sha256 ${sha256(expected)}); first difference at byte ${i}`
}
