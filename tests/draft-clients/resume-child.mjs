// Starts an IETF-draft upload of a file with tus-js-client 5 and dies abruptly (SIGKILL: no
// cleanup, a PATCH in flight) once the client reports more than a given fraction sent. The upload
// URL stays in the FileUrlStorage for a later process to resume from.
//
//   INTAKE_DRAFT_URL=... node resume-child.mjs FILE URL_STORAGE_JSON PROTOCOL [FRACTION=0.4] [CHUNK_SIZE=524288]
//
// Prints one JSON line `{"url", "sent", "total"}` just before it kills itself.
import { createReadStream, writeSync } from 'node:fs'
import { Upload } from 'tus-js-client'
import { FileUrlStorage } from 'tus-js-client/node/FileUrlStorage'
import { endpoint } from './helpers.mjs'

const [file, storagePath, protocol, fraction = '0.4', chunkSize = String(512 * 1024)] = process.argv.slice(2)
if (!file || !storagePath || !protocol) {
  console.error('usage: node resume-child.mjs FILE URL_STORAGE_JSON PROTOCOL [FRACTION] [CHUNK_SIZE]')
  process.exit(2)
}

const upload = new Upload(createReadStream(file), {
  endpoint: endpoint(),
  protocol,
  chunkSize: Number(chunkSize),
  retryDelays: null,
  urlStorage: new FileUrlStorage(storagePath),
  storeFingerprintForResuming: true,
  removeFingerprintOnSuccess: false,
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
