// tus-js-client (npm) for tests/s3/s3_test.py, one process per step, so that the upload is
// resumed by a new client process as well as by a new server process:
//
//   node tus-js.mjs start  FILE URL_STORAGE_JSON ENDPOINT FRACTION   # dies (SIGKILL) past FRACTION
//   node tus-js.mjs resume FILE URL_STORAGE_JSON ENDPOINT            # resumes from the stored URL
//
// Both send 1 MiB chunks. Prints one JSON line: {"url", "sent", "total"} before dying, or
// {"url", "finished": true, "resumedFrom"} once the upload is complete.
import { createReadStream, writeSync } from 'node:fs'
import { FileUrlStorage, Upload } from 'tus-js-client'

const [mode, file, storagePath, endpoint, fraction = '0.4'] = process.argv.slice(2)
if (!['start', 'resume'].includes(mode) || !file || !storagePath || !endpoint) {
  console.error('usage: node tus-js.mjs start|resume FILE URL_STORAGE_JSON ENDPOINT [FRACTION]')
  process.exit(2)
}

let resumedFrom = null
const upload = new Upload(createReadStream(file), {
  endpoint,
  chunkSize: 1024 * 1024,
  retryDelays: null,
  urlStorage: new FileUrlStorage(storagePath),
  storeFingerprintForResuming: true,
  removeFingerprintOnSuccess: false,
  metadata: { filename: 'resumed.bin', filetype: 'application/octet-stream' },
  onProgress(sent, total) {
    if (resumedFrom === null) resumedFrom = sent
    if (mode === 'start' && sent > total * Number(fraction)) {
      writeSync(1, `${JSON.stringify({ url: upload.url, sent, total })}\n`)
      process.kill(process.pid, 'SIGKILL')
    }
  },
  onSuccess() {
    writeSync(1, `${JSON.stringify({ url: upload.url, finished: true, resumedFrom })}\n`)
    process.exit(mode === 'resume' ? 0 : 3)
  },
  onError(err) {
    console.error(`upload failed: ${err.message}`)
    process.exit(1)
  },
})

if (mode === 'resume') {
  const previous = await upload.findPreviousUploads()
  if (previous.length === 0) {
    console.error('no previous upload stored to resume')
    process.exit(1)
  }
  upload.resumeFromPreviousUpload(previous[0])
}
upload.start()
