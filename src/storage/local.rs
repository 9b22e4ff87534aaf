//! Local disk: the default store.

use super::{
    ByteStream, Digests, NewUpload, ObjectRead, Store, StoreError, StoredObject, UploadInfo, WriteGuard, check_room, now_secs,
    resolve_range,
};
use crate::id::UploadId;
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use std::{
    collections::HashSet,
    io::{self, SeekFrom},
    ops::Range,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};
use tokio::{
    fs,
    io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt, BufWriter},
};

/// When [`LocalDisk`] asks the operating system to flush data to the device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum FsyncPolicy {
    /// Never: fastest; a power loss may lose recently finished files.
    Never,
    /// Before a finished file is renamed into place, and its directory after (the default):
    /// a file that was reported stored survives a power loss.
    #[default]
    OnFinish,
    /// After every write request too, so that a resumable upload's reported offset survives a
    /// power loss.
    Always,
}

/// Stores files under a root directory.
///
/// ```text
/// root/partial/{id}        bytes of an upload in progress
/// root/partial/{id}.json   its UploadInfo
/// root/objects/{id}        a finished file
/// root/objects/{id}.json   its StoredObject: written last, by rename, so it is the commit point
/// ```
/// Bytes go to `partial/` and are renamed into `objects/` only when complete (and verified, when
/// a hash layer runs), so no reader ever sees a partial file. Ids are checked hex before they
/// touch a path.
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
    /// A store under `root` (created on first use) with [`FsyncPolicy::OnFinish`].
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            inner: Arc::new(Inner {
                root: root.into(),
                fsync: FsyncPolicy::default(),
                buffer: 256 * 1024,
                writing: Mutex::default(),
            }),
        }
    }

    /// Sets the fsync policy.
    pub fn with_fsync(self, fsync: FsyncPolicy) -> Self {
        self.map_inner(|i| i.fsync = fsync)
    }

    /// Sets the write buffer per upload (default 256 KiB): larger buffers mean fewer system calls,
    /// at this much memory per upload in flight.
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

    fn object(&self, id: &UploadId) -> PathBuf {
        self.inner.root.join("objects").join(id.as_str())
    }

    async fn read_json<T: serde::de::DeserializeOwned>(path: &Path, id: &UploadId) -> Result<T, StoreError> {
        match fs::read(path).await {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(StoreError::backend),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StoreError::NotFound(id.clone())),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes `value` next to `path` and renames it into place, so readers see all or nothing.
    async fn write_json_atomic<T: serde::Serialize>(&self, path: &Path, value: &T) -> Result<(), StoreError> {
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec(value).map_err(StoreError::backend)?;
        let mut file = fs::File::create(&tmp).await?;
        file.write_all(&bytes).await?;
        if self.inner.fsync != FsyncPolicy::Never {
            file.sync_all().await?;
        }
        drop(file);
        fs::rename(&tmp, path).await?;
        Ok(())
    }

    async fn sync_dir(&self, dir: &Path) -> Result<(), StoreError> {
        if self.inner.fsync != FsyncPolicy::Never {
            fs::File::open(dir).await?.sync_all().await?;
        }
        Ok(())
    }

    async fn current_offset(&self, id: &UploadId) -> Result<u64, StoreError> {
        match fs::metadata(self.partial(id)).await {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StoreError::NotFound(id.clone())),
            Err(e) => Err(e.into()),
        }
    }

    async fn info_without_offset(&self, id: &UploadId) -> Result<UploadInfo, StoreError> {
        Self::read_json(&self.partial(id).with_extension("json"), id).await
    }
}

#[async_trait]
impl Store for LocalDisk {
    async fn create(&self, upload: NewUpload) -> Result<UploadInfo, StoreError> {
        let root = &self.inner.root;
        fs::create_dir_all(root.join("partial")).await?;
        fs::create_dir_all(root.join("objects")).await?;
        let info =
            UploadInfo { id: UploadId::random(), offset: 0, length: upload.length, meta: upload.meta, created_at: now_secs() };
        fs::OpenOptions::new().write(true).create_new(true).open(self.partial(&info.id)).await?;
        self.write_json_atomic(&self.partial(&info.id).with_extension("json"), &info).await?;
        Ok(info)
    }

    async fn write(&self, id: &UploadId, offset: u64, mut data: ByteStream<'_>) -> Result<u64, StoreError> {
        let _guard = WriteGuard::acquire(&self.inner.writing, id)?;
        let info = self.info_without_offset(id).await?;
        let start = self.current_offset(id).await?;
        if start != offset {
            return Err(StoreError::OffsetMismatch { expected: start, given: offset });
        }
        let room = info.length.map(|l| l - start);
        let file = fs::OpenOptions::new().append(true).open(self.partial(id)).await?;
        let mut out = BufWriter::with_capacity(self.inner.buffer, file);
        let mut written = 0u64;
        let mut failure = None;
        while let Some(chunk) = data.next().await {
            let chunk: Bytes = match chunk {
                Ok(c) => c,
                Err(e) => {
                    failure = Some(StoreError::Body(e));
                    break;
                }
            };
            if let Err(e) = check_room(&chunk, written, room, info.length) {
                failure = Some(e);
                break;
            }
            out.write_all(&chunk).await?;
            written += chunk.len() as u64;
        }
        // Keep what arrived before a failure: a resumable upload continues from there.
        out.flush().await?;
        let mut file = out.into_inner();
        if self.inner.fsync == FsyncPolicy::Always {
            file.sync_data().await?;
        }
        file.shutdown().await?;
        match failure {
            Some(e) => Err(e),
            None => Ok(start + written),
        }
    }

    async fn info(&self, id: &UploadId) -> Result<UploadInfo, StoreError> {
        let mut info = self.info_without_offset(id).await?;
        info.offset = self.current_offset(id).await?;
        Ok(info)
    }

    async fn finish(&self, id: &UploadId, digests: Digests) -> Result<StoredObject, StoreError> {
        let _guard = WriteGuard::acquire(&self.inner.writing, id)?;
        let info = self.info(id).await?;
        if let Some(length) = info.length.filter(|&l| l != info.offset) {
            return Err(StoreError::Incomplete { offset: info.offset, length });
        }
        let object =
            StoredObject { id: info.id.clone(), size: info.offset, meta: info.meta, digests, created_at: info.created_at };
        let partial = self.partial(id);
        if self.inner.fsync != FsyncPolicy::Never {
            fs::File::open(&partial).await?.sync_all().await?;
        }
        let target = self.object(id);
        fs::rename(&partial, &target).await?;
        self.write_json_atomic(&target.with_extension("json"), &object).await?;
        self.sync_dir(&self.inner.root.join("objects")).await?;
        let _ = fs::remove_file(partial.with_extension("json")).await;
        Ok(object)
    }

    async fn abort(&self, id: &UploadId) -> Result<(), StoreError> {
        let partial = self.partial(id);
        let mut found = false;
        for path in [partial.with_extension("json"), partial] {
            match fs::remove_file(&path).await {
                Ok(()) => found = true,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        if found { Ok(()) } else { Err(StoreError::NotFound(id.clone())) }
    }

    async fn head(&self, id: &UploadId) -> Result<StoredObject, StoreError> {
        Self::read_json(&self.object(id).with_extension("json"), id).await
    }

    async fn read(&self, id: &UploadId, range: Option<Range<u64>>) -> Result<ObjectRead, StoreError> {
        let object = self.head(id).await?;
        let range = resolve_range(range, object.size)?;
        let mut file = fs::File::open(self.object(id)).await?;
        file.seek(SeekFrom::Start(range.start)).await?;
        let reader = file.take(range.end - range.start);
        let body = futures_util::stream::try_unfold(reader, |mut reader| async move {
            let mut buf = BytesMut::with_capacity(64 * 1024);
            match reader.read_buf(&mut buf).await? {
                0 => Ok(None),
                _ => Ok(Some((buf.freeze(), reader))),
            }
        })
        .boxed();
        Ok(ObjectRead { object, range, body })
    }

    async fn delete(&self, id: &UploadId) -> Result<(), StoreError> {
        let path = self.object(id);
        match fs::remove_file(path.with_extension("json")).await {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(StoreError::NotFound(id.clone())),
            other => other?,
        }
        let _ = fs::remove_file(path).await;
        Ok(())
    }
}
