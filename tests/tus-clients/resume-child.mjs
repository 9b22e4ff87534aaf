// Starts an upload of a file and dies abruptly (SIGKILL, no cleanup, a request in flight) once
// the client reports more than a given fraction sent. The upload URL stays in the FileUrlStorage
// for a later process to resume from.
//
//   INTAKE_TUS_URL=... node resume-child.mjs FILE URL_STORAGE_JSON [FRACTION=0.4] [CHUNK_SIZE=524288]
//
// Prints one JSON line `{"url", "sent", "total"}` just before it kills itself.
import { createReadStream, writeSync } from 'node:fs'
import { FileUrlStorage, Upload } from 'tus-js-client'
import { endpoint } from './helpers.mjs'

const [file, storagePath, fraction = '0.4', chunkSize = String(512 * 1024)] = process.argv.slice(2)
if (!file || !storagePath) {
  console.error('usage: node resume-child.mjs FILE URL_STORAGE_JSON [FRACTION] [CHUNK_SIZE]')
  process.exit(2)
}

const upload = new Upload(createReadStream(file), {
  endpoint: endpoint(),
  chunkSize: Number(chunkSize),
  retryDelays: null,
  urlStorage: new FileUrlStorage(storagePath),
  storeFingerprintForResuming: true,
  removeFingerprintOnSuccess: false,
  metadata: { filename: 'resumed.bin', filetype: 'application/octet-stream' },
  onProgress(sent, total) {
    if (sent > total * Number(fraction)) {
      writeSync(1, `${JSON.stringify({ url: upload.url, sent, total })}\n`)
      process.kill(process.pid, 'SIGKILL')
    }
  },
  onSuccess() {
    writeSync(1, `${JSON.stringify({ url: upload.url, finished: true })}\n`)
    process.exit(3)
  },
  onError(err) {
    console.error(`upload failed before it could be interrupted: ${err.message}`)
    process.exit(1)
  },
})
upload.start()
