// The test page's script: Uppy with the Dashboard and the tus plugin, on Uppy's defaults but for
// the endpoint. esbuild bundles it (and Uppy from node_modules) for the browser when the test
// starts; nothing bundled is kept. Every Uppy event the test looks at is recorded in
// `window.uppyEvents`.
import Uppy from '@uppy/core'
import Dashboard from '@uppy/dashboard'
import Tus from '@uppy/tus'

const params = new URLSearchParams(window.location.search)
const events = []
window.uppyEvents = events

const uppy = new Uppy({ id: 'intake' })
  .use(Dashboard, { inline: true, target: '#uppy', proudlyDisplayPoweredByUppy: false, height: 420 })
  .use(Tus, { endpoint: new URL(params.get('endpoint') || '/upload/tus/', window.location.href).href })

uppy.on('upload-progress', (file, progress) => {
  events.push({ type: 'progress', name: file.name, sent: progress.bytesUploaded, total: progress.bytesTotal })
})
uppy.on('upload-success', (file, response) => {
  events.push({ type: 'success', name: file.name, url: response.uploadURL })
})
uppy.on('upload-error', (file, error) => {
  events.push({ type: 'error', name: file?.name, message: String(error) })
})
uppy.on('complete', (result) => {
  events.push({ type: 'complete', successful: result.successful.map((f) => f.name), failed: result.failed.map((f) => f.name) })
})
window.uppy = uppy
