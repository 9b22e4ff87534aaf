//! Local disk: the default store.

use super::{
    ByteStream, Capabilities, Digests, DigestsAtEnd, FileMeta, KeyPrefix, LengthCheck, NewUpload, ObjectRead, Store, StoreError,
    StoredObject, UploadInfo, WriteGuard, check_room, now_secs, resolve_range,
};
use crate::id::UploadId;
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures_util::{StreamExt, stream::BoxStream};
use std::{
    collections::HashSet,
    fs::{self, File, OpenOptions},
    io::{self, Seek, SeekFrom, Write},
    ops::Range,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};
use tokio::{io::AsyncReadExt, task::spawn_blocking};

/// When [`LocalDisk`] asks the operating system to flush data to the device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum FsyncPolicy {
    /// Never (the default, like tusd's file store and object_store's `LocalFileSystem`): files
    /// survive a crash of the process — the operating system holds the data — but a power loss
    /// may lose recently finished files. Readers never see a partial file either way.
    #[default]
    Never,
    /// Before a finished file is renamed into place, and its directory after: a file that was
    /// reported stored survives a power loss. Costs a device flush per file.
    OnFinish,
    /// After every write request too, so that a resumable upload's reported offset survives a
    /// power loss.
    Always,
}

/// Stores files under a root directory.
///
/// ```text
/// root/partial/{id}        bytes of a resumable upload in progress
/// root/partial/{id}.json   its UploadInfo (offset = the data file's length)
/// root/objects/{id}        a file's bytes (a one-shot upload streams straight here)
/// root/objects/{id}.json   its StoredObject: written last, by rename, so it is the commit point
/// ```
/// A file exists only once its description is in place, which happens when it is complete (and
/// verified, when a hash layer runs), so no reader ever sees a partial file. A one-shot upload
/// ([`Store::put_object`]) whose request fails or is dropped removes its bytes. Ids are checked
/// hex before they touch a path.
#[derive(Clone, Debug)]
pub struct LocalDisk {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    fsync: FsyncPolicy,
    buffer: usize,
    writing: Mutex<HashSet<UploadId>>,
}

impl LocalDisk {
    /// A store under `root` (created on first use) with [`FsyncPolicy::Never`].
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            inner: Arc::new(Inner {
                root: root.into(),
                fsync: FsyncPolicy::default(),
                buffer: 128 * 1024,
                writing: Mutex::default(),
            }),
        }
    }

    /// Sets the fsync policy.
    pub fn with_fsync(self, fsync: FsyncPolicy) -> Self {
        self.map_inner(|i| i.fsync = fsync)
    }

    /// Sets how many bytes are gathered before a write to disk (default 128 KiB). One batch is
    /// written while the next is gathered, so an upload holds at most twice this much.
    pub fn with_write_buffer(self, bytes: usize) -> Self {
        self.map_inner(|i| i.buffer = bytes.max(4096))
    }

    fn map_inner(self, f: impl FnOnce(&mut Inner)) -> Self {
        let mut inner = Arc::try_unwrap(self.inner).unwrap_or_else(|shared| Inner {
            root: shared.root.clone(),
            fsync: shared.fsync,
            buffer: shared.buffer,
            writing: Mutex::default(),
        });
        f(&mut inner);
        Self { inner: Arc::new(inner) }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    fn partial(&self, id: &UploadId) -> PathBuf {
        self.inner.root.join("partial").join(id.as_str())
    }

    /// Where an object's bytes are: `objects/{prefix}/{id}`, or `objects/{id}`.
    fn object(&self, prefix: Option<&KeyPrefix>, id: &UploadId) -> PathBuf {
        self.inner.root.join("objects").join(KeyPrefix::key(prefix, id))
    }

    /// Where an object's description is, whatever its prefix: `objects/{id}.json`.
    fn description(&self, id: &UploadId) -> PathBuf {
        self.inner.root.join("objects").join(format!("{id}.json"))
    }

    /// Runs filesystem work on the blocking pool: each store operation is one hop there, which
    /// is what keeps small uploads cheap.
    async fn blocking<T, F>(f: F) -> Result<T, StoreError>
    where
        F: FnOnce() -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        spawn_blocking(f).await.map_err(StoreError::backend)?
    }
}

fn not_found(id: &UploadId) -> impl Fn(io::Error) -> StoreError + '_ {
    move |e| if e.kind() == io::ErrorKind::NotFound { StoreError::NotFound(id.clone()) } else { e.into() }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path, id: &UploadId) -> Result<T, StoreError> {
    let bytes = fs::read(path).map_err(not_found(id))?;
    serde_json::from_slice(&bytes).map_err(StoreError::backend)
}

/// Writes `value` next to `path` and renames it into place, so readers see all or nothing.
fn write_json_atomic<T: serde::Serialize>(path: &Path, value: &T, sync: bool) -> Result<(), StoreError> {
    let tmp = path.with_extension("json.tmp");
    let mut file = File::create(&tmp)?;
    file.write_all(&serde_json::to_vec(value).map_err(StoreError::backend)?)?;
    if sync {
        file.sync_all()?;
    }
    drop(file);
    fs::rename(&tmp, path)?;
    Ok(())
}

/// The upload's info with its offset: the length of its data file.
fn info_at(data: &Path, id: &UploadId) -> Result<UploadInfo, StoreError> {
    let mut info: UploadInfo = read_json(&data.with_extension("json"), id)?;
    info.offset = fs::metadata(data).map_err(not_found(id))?.len();
    Ok(info)
}

/// Streams `len` bytes of `file` from its current position.
fn read_file(file: File, len: u64) -> BoxStream<'static, Result<Bytes, io::Error>> {
    let reader = tokio::fs::File::from_std(file).take(len);
    futures_util::stream::try_unfold(reader, |mut reader| async move {
        let mut buf = BytesMut::with_capacity(64 * 1024);
        match reader.read_buf(&mut buf).await? {
            0 => Ok(None),
            _ => Ok(Some((buf.freeze(), reader))),
        }
    })
    .boxed()
}

fn write_all(file: &mut File, batch: &[Bytes]) -> io::Result<()> {
    batch.iter().try_for_each(|chunk| file.write_all(chunk))
}

type Opener = Box<dyn FnOnce() -> Result<File, StoreError> + Send>;

/// Writes chunks to a file in batches on the blocking pool: one batch is written while the next
/// is gathered, the chunks go to the file as they came (no copy), and a body smaller than one
/// batch costs a single hop, opening included.
struct BatchedFile {
    file: Option<File>,
    open: Option<Opener>,
    writing: Option<tokio::task::JoinHandle<Result<File, StoreError>>>,
    batch: Vec<Bytes>,
    len: usize,
    size: usize,
}

impl BatchedFile {
    fn new(file: Option<File>, open: Option<Opener>, size: usize) -> Self {
        Self { file, open, writing: None, batch: Vec::new(), len: 0, size }
    }

    async fn push(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        self.len += chunk.len();
        self.batch.push(chunk);
        if self.len >= self.size {
            self.settle().await?;
            let (file, open, full) = (self.file.take(), self.open.take(), std::mem::take(&mut self.batch));
            self.len = 0;
            self.writing = Some(spawn_blocking(move || {
                let mut file = file_or_open(file, open)?;
                write_all(&mut file, &full)?;
                Ok(file)
            }));
        }
        Ok(())
    }

    /// Waits for the batch being written.
    async fn settle(&mut self) -> Result<(), StoreError> {
        if let Some(writing) = self.writing.take() {
            self.file = Some(writing.await.map_err(StoreError::backend)??);
        }
        Ok(())
    }

    /// Writes what is left and runs `then` on the file, in one hop.
    async fn finish<T: Send + 'static>(
        mut self,
        then: impl FnOnce(File) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.settle().await?;
        let (file, open, rest) = (self.file.take(), self.open.take(), std::mem::take(&mut self.batch));
        LocalDisk::blocking(move || {
            let mut file = file_or_open(file, open)?;
            write_all(&mut file, &rest)?;
            then(file)
        })
        .await
    }
}

/// The file if it is open, else opened now (on the blocking pool).
fn file_or_open(file: Option<File>, open: Option<Opener>) -> Result<File, StoreError> {
    match (file, open) {
        (Some(file), _) => Ok(file),
        (None, Some(open)) => open(),
        (None, None) => unreachable!("a BatchedFile has a file or a way to open one"),
    }
}

/// Removes a file when dropped unless disarmed: a one-shot upload whose request is dropped (the
/// client went away, the server stopped) leaves nothing behind.
struct RemoveOnDrop(Vec<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        for path in self.0.drain(..) {
            let _ = fs::remove_file(path);
        }
    }
}

#[async_trait]
impl Store for LocalDisk {
    async fn create(&self, upload: NewUpload) -> Result<UploadInfo, StoreError> {
        let info = UploadInfo::new(upload);
        let (root, data, sync) = (self.inner.root.clone(), self.partial(&info.id), self.inner.fsync == FsyncPolicy::Always);
        let created = info.clone();
        Self::blocking(move || {
            let open = || OpenOptions::new().write(true).create_new(true).open(&data);
            if let Err(e) = open() {
                if e.kind() != io::ErrorKind::NotFound {
                    return Err(e.into());
                }
                fs::create_dir_all(root.join("partial"))?;
                fs::create_dir_all(root.join("objects"))?;
                open()?;
            }
            write_json_atomic(&data.with_extension("json"), &created, sync)
        })
        .await?;
        Ok(info)
    }

    async fn write(&self, id: &UploadId, offset: u64, mut data: ByteStream<'_>) -> Result<u64, StoreError> {
        let _guard = WriteGuard::acquire(&self.inner.writing, id)?;
        let (path, owned_id) = (self.partial(id), id.clone());
        let (info, file) = Self::blocking(move || {
            let info = info_at(&path, &owned_id)?;
            let file = OpenOptions::new().append(true).open(&path).map_err(not_found(&owned_id))?;
            Ok((info, file))
        })
        .await?;
        if info.offset != offset {
            return Err(StoreError::OffsetMismatch { expected: info.offset, given: offset });
        }
        let room = info.length.map(|l| l - info.offset);
        let mut out = BatchedFile::new(Some(file), None, self.inner.buffer);
        let (mut written, mut failure) = (0u64, None);
        while let Some(chunk) = data.next().await {
            let step = match chunk {
                Ok(chunk) => check_room(&chunk, written, room, info.length).map(|()| chunk),
                Err(e) => Err(StoreError::Body(e)),
            };
            match step {
                Ok(chunk) => {
                    written += chunk.len() as u64;
                    out.push(chunk).await?;
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        // Keep what arrived before a failure: a resumable upload continues from there.
        let sync = self.inner.fsync == FsyncPolicy::Always;
        out.finish(move |file| {
            if sync {
                file.sync_data()?;
            }
            Ok(())
        })
        .await?;
        match failure {
            Some(e) => Err(e),
            None => Ok(info.offset + written),
        }
    }

    async fn info(&self, id: &UploadId) -> Result<UploadInfo, StoreError> {
        let (path, id) = (self.partial(id), id.clone());
        Self::blocking(move || info_at(&path, &id)).await
    }

    async fn finish(&self, id: &UploadId, digests: Digests, meta: Option<FileMeta>) -> Result<StoredObject, StoreError> {
        let _guard = WriteGuard::acquire(&self.inner.writing, id)?;
        let (partial, description, id) = (self.partial(id), self.description(id), id.clone());
        let (sync, objects, store) = (self.inner.fsync != FsyncPolicy::Never, self.inner.root.join("objects"), self.clone());
        Self::blocking(move || {
            let object = info_at(&partial, &id)?.finished(digests, meta)?;
            let target = store.object(object.key_prefix.as_ref(), &id);
            if sync {
                File::open(&partial)?.sync_all()?;
            }
            if object.key_prefix.is_some() {
                fs::create_dir_all(target.parent().expect("an object path has a parent"))?;
            }
            fs::rename(&partial, &target)?;
            // The metadata is the commit point: until it is in place, the object does not exist.
            write_json_atomic(&description, &object, sync)?;
            if sync {
                File::open(&objects)?.sync_all()?;
            }
            let _ = fs::remove_file(partial.with_extension("json"));
            Ok(object)
        })
        .await
    }

    async fn abort(&self, id: &UploadId) -> Result<(), StoreError> {
        let (partial, id) = (self.partial(id), id.clone());
        Self::blocking(move || {
            let mut found = false;
            for path in [partial.with_extension("json"), partial] {
                match fs::remove_file(&path) {
                    Ok(()) => found = true,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e.into()),
                }
            }
            if found { Ok(()) } else { Err(StoreError::NotFound(id)) }
        })
        .await
    }

    async fn read_partial(
        &self,
        id: &UploadId,
        range: Range<u64>,
    ) -> Result<BoxStream<'static, Result<Bytes, io::Error>>, StoreError> {
        let (path, id) = (self.partial(id), id.clone());
        let (file, range) = Self::blocking(move || {
            let info = info_at(&path, &id)?;
            let range = resolve_range(Some(range), info.offset)?;
            let mut file = File::open(&path).map_err(not_found(&id))?;
            file.seek(SeekFrom::Start(range.start))?;
            Ok((file, range))
        })
        .await?;
        Ok(read_file(file, range.end - range.start))
    }

    async fn truncate(&self, id: &UploadId, offset: u64) -> Result<(), StoreError> {
        let _guard = WriteGuard::acquire(&self.inner.writing, id)?;
        let (path, id, sync) = (self.partial(id), id.clone(), self.inner.fsync == FsyncPolicy::Always);
        Self::blocking(move || {
            let info = info_at(&path, &id)?;
            if offset > info.offset {
                return Err(StoreError::InvalidRange { size: info.offset });
            }
            let file = OpenOptions::new().write(true).open(&path).map_err(not_found(&id))?;
            file.set_len(offset)?;
            if sync {
                file.sync_data()?;
            }
            Ok(())
        })
        .await
    }

    async fn list_unfinished(&self) -> Result<Vec<UploadInfo>, StoreError> {
        let dir = self.inner.root.join("partial");
        Self::blocking(move || {
            let entries = match fs::read_dir(&dir) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
                other => other?,
            };
            let mut found = Vec::new();
            for entry in entries {
                let name = entry?.file_name();
                let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".json")).and_then(UploadId::parse) else { continue };
                match info_at(&dir.join(id.as_str()), &id) {
                    Ok(info) => found.push(info),
                    // Finished or aborted meanwhile.
                    Err(StoreError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(found)
        })
        .await
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::ALL
    }

    async fn head(&self, id: &UploadId) -> Result<StoredObject, StoreError> {
        let (path, id) = (self.description(id), id.clone());
        Self::blocking(move || read_json(&path, &id)).await
    }

    async fn read(&self, id: &UploadId, range: Option<Range<u64>>) -> Result<ObjectRead, StoreError> {
        let (description, id, store) = (self.description(id), id.clone(), self.clone());
        let (object, range, file) = Self::blocking(move || {
            let object: StoredObject = read_json(&description, &id)?;
            let range = resolve_range(range, object.size)?;
            let path = store.object(object.key_prefix.as_ref(), &id);
            let mut file = File::open(&path).map_err(not_found(&id))?;
            file.seek(SeekFrom::Start(range.start))?;
            Ok((object, range, file))
        })
        .await?;
        let body = read_file(file, range.end - range.start);
        Ok(ObjectRead { object, range, body })
    }

    async fn put_object(
        &self,
        upload: NewUpload,
        mut data: ByteStream<'_>,
        digests: DigestsAtEnd,
    ) -> Result<StoredObject, StoreError> {
        // The data goes straight to objects/{id}: invisible until its metadata is renamed into
        // place, which is the commit point, as for finish(). No resumable record is kept.
        let id = UploadId::random();
        let path = self.object(upload.key_prefix.as_ref(), &id);
        let description = self.description(&id);
        let mut guard = RemoveOnDrop(vec![description.clone(), path.clone()]);
        let target = path.clone();
        let open: Opener = Box::new(move || {
            let create = || OpenOptions::new().write(true).create_new(true).open(&target);
            match create() {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir_all(target.parent().expect("an object path has a parent"))?;
                    Ok(create()?)
                }
                other => Ok(other?),
            }
        });
        let mut out = BatchedFile::new(None, Some(open), self.inner.buffer);
        let mut length = LengthCheck::new(upload.length);
        while let Some(chunk) = data.next().await {
            let chunk = chunk.map_err(StoreError::Body)?;
            length.admit(&chunk)?;
            out.push(chunk).await?;
        }
        let size = length.end()?;
        let object = StoredObject {
            id,
            size,
            meta: upload.meta,
            digests: digests(),
            created_at: now_secs(),
            key_prefix: upload.key_prefix,
        };
        let (sync, objects, meta) = (self.inner.fsync != FsyncPolicy::Never, self.inner.root.join("objects"), object.clone());
        out.finish(move |file| {
            if sync {
                file.sync_all()?;
            }
            drop(file);
            write_json_atomic(&description, &meta, sync)?;
            if sync {
                File::open(&objects)?.sync_all()?;
            }
            Ok(())
        })
        .await?;
        guard.0.clear();
        Ok(object)
    }

    async fn delete(&self, id: &UploadId) -> Result<(), StoreError> {
        let (description, id, store) = (self.description(id), id.clone(), self.clone());
        Self::blocking(move || {
            let object: StoredObject = read_json(&description, &id)?;
            fs::remove_file(&description).map_err(not_found(&id))?;
            let _ = fs::remove_file(store.object(object.key_prefix.as_ref(), &id));
            Ok(())
        })
        .await
    }
}
