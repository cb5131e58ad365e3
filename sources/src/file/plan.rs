//! Which files a `file://` source reads, cut into chunks, and who parses which chunk.
//!
//! A file is one partition. Its bytes are cut into fixed-size chunks (a chunk holds the
//! lines that *start* inside it), numbered across all files in name order, and chunk `j`
//! is parsed by worker `j % peers`: the assignment depends only on the input and the
//! worker count, and the chunk boundaries only on the input, so results do not depend on
//! either.

use crate::format::{Item, parse_line};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Why a `file://` source cannot be read, or resumed from a checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum FileSourceError {
    /// The path does not exist or cannot be read.
    #[error("--source file://{path}: {source}; check that the path exists and is readable")]
    Unreadable {
        /// The path.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A pipe, FIFO or device: no size to split into chunks, and read at most once.
    #[error(
        "--source file://{path}: not a regular file (a pipe, FIFO or device); read standard input with --source - instead, e.g. `kcat -C -t trades -e | tradeflow run --source -` or `tradeflow run --source - < {path}`"
    )]
    NotAFile {
        /// The path.
        path: String,
    },
    /// A checkpoint's state of the source cannot be decoded.
    #[error("{0}")]
    Checkpoint(String),
    /// The files or their sizes differ from those of the checkpoint being resumed.
    #[error(
        "the input changed since the checkpoint: it was {}, it is {}; resume with the same files, or start again with --from-scratch",
        describe(.then),
        describe(.now)
    )]
    InputChanged {
        /// Each file's path and size in the checkpoint.
        then: Vec<(String, u64)>,
        /// Each file's path and size now.
        now: Vec<(String, u64)>,
    },
}

/// `path (size bytes), ...`.
fn describe(files: &[(String, u64)]) -> String {
    files.iter().map(|(p, s)| format!("{p} ({s} bytes)")).collect::<Vec<_>>().join(", ")
}

/// One input file.
#[derive(Clone, Debug)]
pub struct FileInfo {
    /// Its path.
    pub path: PathBuf,
    /// `file:///abs/path`, the partition's name in dead letters and logs.
    pub label: String,
    /// Size in bytes when planned.
    pub size: u64,
    /// Global index of its first chunk.
    pub first_chunk: usize,
    /// Number of chunks.
    pub chunks: usize,
    /// Event time of its first valid trade: nothing accepted from this file is below
    /// `first_ts − lateness`. `i64::MAX` when the file holds no valid trade, `i64::MIN`
    /// when its first MiB holds none (unknown).
    pub first_ts: i64,
}

/// The files of a source and their chunks.
#[derive(Clone, Debug)]
pub struct FilePlan {
    /// Files in name order.
    pub files: Vec<FileInfo>,
    /// Chunk size in bytes.
    pub chunk_bytes: u64,
}

/// A chunk: which file, which bytes.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ChunkRef {
    /// Global chunk index.
    pub global: usize,
    /// Index of the file in the plan.
    pub file: usize,
    /// Index of the chunk within its file.
    pub index: usize,
    /// First byte (lines starting at or after it belong to the chunk).
    pub start: u64,
    /// End byte (lines starting before it belong to the chunk).
    pub end: u64,
}

impl FilePlan {
    /// Lists `path` (a file, or the files of a directory in name order, skipping hidden
    /// ones) and peeks at each file's first valid trade.
    pub fn new(path: &Path, chunk_bytes: u64) -> Result<FilePlan, FileSourceError> {
        let unreadable = |source| FileSourceError::Unreadable { path: path.display().to_string(), source };
        let meta = std::fs::metadata(path).map_err(unreadable)?;
        let mut paths = Vec::new();
        if meta.is_dir() {
            for entry in std::fs::read_dir(path).map_err(unreadable)? {
                let entry = entry.map_err(unreadable)?;
                let hidden = entry.file_name().to_string_lossy().starts_with('.');
                if !hidden && entry.file_type().map_err(unreadable)?.is_file() {
                    paths.push(entry.path());
                }
            }
            paths.sort();
        } else if meta.is_file() {
            paths.push(path.to_path_buf());
        } else {
            return Err(FileSourceError::NotAFile { path: path.display().to_string() });
        }
        let chunk_bytes = chunk_bytes.max(1);
        let mut files = Vec::new();
        let mut first_chunk = 0;
        for path in paths {
            // Opened once now, so that a file the run cannot read stops it before it
            // starts instead of being skipped: input is never lost silently.
            let size = std::fs::File::open(&path)
                .and_then(|file| file.metadata())
                .map_err(|source| FileSourceError::Unreadable { path: path.display().to_string(), source })?
                .len();
            let chunks = size.div_ceil(chunk_bytes) as usize;
            let first_ts = peek_first_ts(&path);
            let absolute = std::path::absolute(&path).unwrap_or_else(|_| path.clone());
            files.push(FileInfo {
                label: format!("file://{}", absolute.display()),
                path,
                size,
                first_chunk,
                chunks,
                first_ts,
            });
            first_chunk += chunks;
        }
        Ok(FilePlan { files, chunk_bytes })
    }

    /// Total number of chunks.
    pub fn chunks(&self) -> usize {
        self.files.last().map_or(0, |f| f.first_chunk + f.chunks)
    }

    /// The chunk with global index `global`.
    pub fn chunk(&self, global: usize) -> ChunkRef {
        let file = self.files.partition_point(|f| f.first_chunk + f.chunks <= global);
        let info = &self.files[file];
        let index = global - info.first_chunk;
        let start = index as u64 * self.chunk_bytes;
        ChunkRef { global, file, index, start, end: (start + self.chunk_bytes).min(info.size) }
    }

    /// The chunks worker `worker` of `peers` parses, in order.
    pub fn owned(&self, worker: usize, peers: usize) -> impl Iterator<Item = ChunkRef> + '_ {
        (worker..self.chunks()).step_by(peers.max(1)).map(|g| self.chunk(g))
    }

    /// Total bytes.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// The ts of the first valid trade in the first MiB of `path` (see [`FileInfo::first_ts`]).
fn peek_first_ts(path: &Path) -> i64 {
    const PEEK: u64 = 1 << 20;
    let mut head = Vec::new();
    let read = std::fs::File::open(path).and_then(|f| f.take(PEEK + 1).read_to_end(&mut head));
    if read.is_err() {
        return i64::MIN;
    }
    let whole_file = head.len() as u64 <= PEEK;
    let mut first = None;
    for line in head.split(|b| *b == b'\n') {
        parse_line(line, &mut |item| {
            if let (None, Item::Trade(t)) = (first, item) {
                first = Some(t.ts);
            }
        });
        if first.is_some() {
            break;
        }
    }
    match first {
        Some(ts) => ts,
        None if whole_file => i64::MAX,
        None => i64::MIN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_input_names_both_listings() {
        let e = FileSourceError::InputChanged {
            then: vec![("/a".into(), 10), ("/b".into(), 2)],
            now: vec![("/a".into(), 11)],
        };
        assert_eq!(
            e.to_string(),
            "the input changed since the checkpoint: it was /a (10 bytes), /b (2 bytes), it is /a (11 bytes); \
             resume with the same files, or start again with --from-scratch"
        );
    }
}
