//! The embedded event log: every topic, record and committed offset in one append-only file
//! (`events.log`), indexed in memory. For `aloft dev` and tests; one process at a time (a lock file says so).
//!
//! File format: frames of `[len: u32][crc32: u32][body]`. A torn frame at the tail (the process died while
//! writing it) is cut off on open; a bad frame elsewhere is reported as corruption, never skipped silently.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::sync::{mpsc, watch};

use crate::{Error, EventLog, GroupMembership, Position, Record, RecordStream, Result};

const FRAME_TOPIC: u8 = 1;
const FRAME_RECORD: u8 = 2;
const FRAME_COMMIT: u8 = 3;

struct StoredRecord {
    key: String,
    payload: Arc<Vec<u8>>,
}

struct GroupMember {
    member_id: u64,
    name: String,
    notify: mpsc::UnboundedSender<Vec<u32>>,
    assigned: Vec<u32>,
}

struct State {
    topics: HashMap<String, Vec<Vec<StoredRecord>>>,
    commits: HashMap<(String, String, u32), u64>,
    groups: HashMap<(String, String), Vec<GroupMember>>,
    next_member_id: u64,
    file: File,
    path: PathBuf,
}

struct Shared {
    state: Mutex<State>,
    /// Bumped on every append so readers wake up.
    appended: watch::Sender<u64>,
    _lock_file: File,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the file half-written in a way we rely on: frames
        // are written whole, and the in-memory index is only updated after the write succeeded.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[derive(Clone)]
pub struct EmbeddedLog {
    shared: Arc<Shared>,
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}

impl EmbeddedLog {
    pub fn open(dir: &Path) -> Result<EmbeddedLog> {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        let lock_path = dir.join("events.lock");
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_error(&lock_path))?;
        if lock_file.try_lock().is_err() {
            return Err(Error::InUse(dir.display().to_string()));
        }
        let path = dir.join("events.log");
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io_error(&path))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io_error(&path))?;
        let mut state = State {
            topics: HashMap::new(),
            commits: HashMap::new(),
            groups: HashMap::new(),
            next_member_id: 0,
            file,
            path: path.clone(),
        };
        let valid_len = replay_frames(&bytes, &mut state, &path)?;
        if valid_len < bytes.len() {
            tracing::warn!(path = %path.display(), torn_bytes = bytes.len() - valid_len, "cutting off a torn frame at the end of the event log");
            state.file.set_len(valid_len as u64).map_err(io_error(&path))?;
        }
        let (appended, _) = watch::channel(0);
        Ok(EmbeddedLog {
            shared: Arc::new(Shared {
                state: Mutex::new(state),
                appended,
                _lock_file: lock_file,
            }),
        })
    }
}

fn replay_frames(bytes: &[u8], state: &mut State, path: &Path) -> Result<usize> {
    let mut position = 0usize;
    while bytes.len() - position >= 8 {
        let len = u32::from_le_bytes(read_array(&bytes[position..position + 4])) as usize;
        let crc = u32::from_le_bytes(read_array(&bytes[position + 4..position + 8]));
        let Some(body) = bytes.get(position + 8..position + 8 + len) else {
            break; // torn tail
        };
        if crc32fast::hash(body) != crc {
            let is_last_frame = position + 8 + len == bytes.len();
            if is_last_frame {
                break;
            }
            return Err(Error::Decode(format!(
                "event log {} is corrupt at byte {position}: checksum mismatch",
                path.display()
            )));
        }
        apply_frame(body, state).map_err(|reason| {
            Error::Decode(format!(
                "event log {} is corrupt at byte {position}: {reason}",
                path.display()
            ))
        })?;
        position += 8 + len;
    }
    Ok(position)
}

fn read_array<const N: usize>(slice: &[u8]) -> [u8; N] {
    let mut array = [0u8; N];
    array.copy_from_slice(&slice[..N]);
    array
}

/// Why a frame of the log file cannot be applied: the file is corrupt past its checksums, or written by a
/// newer build.
#[derive(Debug, thiserror::Error)]
enum FrameError {
    #[error("frame ends early")]
    EndsEarly,
    #[error("invalid utf-8")]
    NotUtf8,
    #[error("record for unknown topic {0}")]
    UnknownTopic(String),
    #[error("record for unknown partition {0}")]
    UnknownPartition(u32),
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    #[error("topic {0} has {1} partitions, more than the {max} a topic may have", max = crate::MAX_PARTITIONS)]
    TooManyPartitions(String, u32),
}

struct FrameReader<'a> {
    body: &'a [u8],
}

impl<'a> FrameReader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], FrameError> {
        if self.body.len() < len {
            return Err(FrameError::EndsEarly);
        }
        let (head, rest) = self.body.split_at(len);
        self.body = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, FrameError> {
        Ok(u32::from_le_bytes(read_array(self.take(4)?)))
    }
    fn u64(&mut self) -> Result<u64, FrameError> {
        Ok(u64::from_le_bytes(read_array(self.take(8)?)))
    }
    fn bytes(&mut self) -> Result<&'a [u8], FrameError> {
        let len = self.u32()? as usize;
        self.take(len)
    }
    fn string(&mut self) -> Result<String, FrameError> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| FrameError::NotUtf8)
    }
}

fn apply_frame(body: &[u8], state: &mut State) -> Result<(), FrameError> {
    let mut reader = FrameReader { body };
    match reader.u8()? {
        FRAME_TOPIC => {
            let topic = reader.string()?;
            let partitions = reader.u32()?;
            // Checked before the partition list is allocated (found by the fuzzer: a topic frame whose
            // checksum held asked for 1.6 billion partitions).
            if partitions > crate::MAX_PARTITIONS {
                return Err(FrameError::TooManyPartitions(topic, partitions));
            }
            state
                .topics
                .entry(topic)
                .or_insert_with(|| (0..partitions).map(|_| Vec::new()).collect());
        }
        FRAME_RECORD => {
            let topic = reader.string()?;
            let partition = reader.u32()?;
            let key = reader.string()?;
            let payload = reader.bytes()?.to_vec();
            let partitions = state
                .topics
                .get_mut(&topic)
                .ok_or_else(|| FrameError::UnknownTopic(topic.clone()))?;
            let records = partitions
                .get_mut(partition as usize)
                .ok_or(FrameError::UnknownPartition(partition))?;
            records.push(StoredRecord {
                key,
                payload: Arc::new(payload),
            });
        }
        FRAME_COMMIT => {
            let group = reader.string()?;
            let topic = reader.string()?;
            let partition = reader.u32()?;
            let offset = reader.u64()?;
            state.commits.insert((group, topic, partition), offset);
        }
        other => return Err(FrameError::UnknownKind(other)),
    }
    Ok(())
}

struct FrameWriter {
    body: Vec<u8>,
}

impl FrameWriter {
    fn new(kind: u8) -> FrameWriter {
        FrameWriter { body: vec![kind] }
    }
    fn u32(mut self, value: u32) -> Self {
        self.body.extend_from_slice(&value.to_le_bytes());
        self
    }
    fn u64(mut self, value: u64) -> Self {
        self.body.extend_from_slice(&value.to_le_bytes());
        self
    }
    fn bytes(self, value: &[u8]) -> Self {
        let mut this = self.u32(value.len() as u32);
        this.body.extend_from_slice(value);
        this
    }
    fn framed(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.body.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(&self.body).to_le_bytes());
        out.extend_from_slice(&self.body);
    }
}

fn write_frames(state: &mut State, frames: &[u8]) -> Result<()> {
    // One write per batch: after a crash either the whole frame is there or the tail is torn and cut off.
    let path = state.path.clone();
    state.file.write_all(frames).map_err(io_error(&path))
}

fn rebalance(members: &mut [GroupMember], partitions: u32) {
    members.sort_by(|a, b| a.name.cmp(&b.name).then(a.member_id.cmp(&b.member_id)));
    let count = members.len() as u32;
    for (index, member) in members.iter_mut().enumerate() {
        let assigned: Vec<u32> = (0..partitions).filter(|p| p % count == index as u32).collect();
        if assigned != member.assigned {
            member.assigned = assigned.clone();
            let _ = member.notify.send(assigned);
        }
    }
}

#[async_trait]
impl EventLog for EmbeddedLog {
    async fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<()> {
        if partitions > crate::MAX_PARTITIONS {
            return Err(Error::TooManyPartitions {
                topic: topic.to_string(),
                partitions,
                max: crate::MAX_PARTITIONS,
            });
        }
        let mut state = self.shared.lock();
        if state.topics.contains_key(topic) {
            return Ok(());
        }
        let mut frames = Vec::new();
        FrameWriter::new(FRAME_TOPIC)
            .bytes(topic.as_bytes())
            .u32(partitions)
            .framed(&mut frames);
        write_frames(&mut state, &frames)?;
        state
            .topics
            .insert(topic.to_string(), (0..partitions).map(|_| Vec::new()).collect());
        Ok(())
    }

    async fn partition_count(&self, topic: &str) -> Result<u32> {
        let state = self.shared.lock();
        state
            .topics
            .get(topic)
            .map(|p| p.len() as u32)
            .ok_or_else(|| Error::UnknownTopic(topic.to_string()))
    }

    fn append_batch(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<(String, Vec<u8>)>,
    ) -> BoxFuture<'static, Result<Vec<Position>>> {
        let result = (|| {
            crate::check_record_sizes(topic, &records)?;
            let mut state = self.shared.lock();
            let base = {
                let partitions = state
                    .topics
                    .get(topic)
                    .ok_or_else(|| Error::UnknownTopic(topic.to_string()))?;
                let existing = partitions
                    .get(partition as usize)
                    .ok_or_else(|| Error::UnknownPartition {
                        topic: topic.to_string(),
                        partition,
                    })?;
                existing.len() as u64
            };
            let mut frames = Vec::new();
            for (key, payload) in &records {
                FrameWriter::new(FRAME_RECORD)
                    .bytes(topic.as_bytes())
                    .u32(partition)
                    .bytes(key.as_bytes())
                    .bytes(payload)
                    .framed(&mut frames);
            }
            write_frames(&mut state, &frames)?;
            let count = records.len() as u64;
            if let Some(existing) = state
                .topics
                .get_mut(topic)
                .and_then(|p| p.get_mut(partition as usize))
            {
                existing.extend(records.into_iter().map(|(key, payload)| StoredRecord {
                    key,
                    payload: Arc::new(payload),
                }));
            }
            drop(state);
            self.shared.appended.send_modify(|version| *version += 1);
            Ok((0..count)
                .map(|i| Position {
                    partition,
                    offset: base + i,
                })
                .collect())
        })();
        futures::future::ready(result).boxed()
    }

    async fn end_offset(&self, topic: &str, partition: u32) -> Result<u64> {
        let state = self.shared.lock();
        let partitions = state
            .topics
            .get(topic)
            .ok_or_else(|| Error::UnknownTopic(topic.to_string()))?;
        partitions
            .get(partition as usize)
            .map(|records| records.len() as u64)
            .ok_or_else(|| Error::UnknownPartition {
                topic: topic.to_string(),
                partition,
            })
    }

    async fn read(&self, starts: Vec<(String, u32, u64)>) -> Result<Box<dyn RecordStream>> {
        {
            let state = self.shared.lock();
            for (topic, partition, _) in &starts {
                let partitions = state
                    .topics
                    .get(topic)
                    .ok_or_else(|| Error::UnknownTopic(topic.clone()))?;
                if *partition as usize >= partitions.len() {
                    return Err(Error::UnknownPartition {
                        topic: topic.clone(),
                        partition: *partition,
                    });
                }
            }
        }
        let cursors = starts
            .into_iter()
            .map(|(topic, partition, offset)| ((topic, partition), offset))
            .collect();
        Ok(Box::new(EmbeddedReader {
            shared: Arc::clone(&self.shared),
            cursors,
            appended: self.shared.appended.subscribe(),
            next_cursor: 0,
        }))
    }

    async fn join_group(&self, group: &str, topic: &str, member: &str) -> Result<Box<dyn GroupMembership>> {
        let (notify, receiver) = mpsc::unbounded_channel();
        let mut state = self.shared.lock();
        let partitions = state
            .topics
            .get(topic)
            .map(|p| p.len() as u32)
            .ok_or_else(|| Error::UnknownTopic(topic.to_string()))?;
        let member_id = state.next_member_id;
        state.next_member_id += 1;
        let members = state
            .groups
            .entry((group.to_string(), topic.to_string()))
            .or_default();
        members.push(GroupMember {
            member_id,
            name: member.to_string(),
            notify,
            assigned: Vec::new(),
        });
        rebalance(members, partitions);
        Ok(Box::new(EmbeddedMembership {
            shared: Arc::clone(&self.shared),
            key: (group.to_string(), topic.to_string()),
            member_id,
            partitions,
            receiver,
        }))
    }

    async fn commit(&self, group: &str, topic: &str, partition: u32, next_offset: u64) -> Result<()> {
        let mut state = self.shared.lock();
        let mut frames = Vec::new();
        FrameWriter::new(FRAME_COMMIT)
            .bytes(group.as_bytes())
            .bytes(topic.as_bytes())
            .u32(partition)
            .u64(next_offset)
            .framed(&mut frames);
        write_frames(&mut state, &frames)?;
        state
            .commits
            .insert((group.to_string(), topic.to_string(), partition), next_offset);
        Ok(())
    }

    async fn committed(&self, group: &str, topic: &str, partition: u32) -> Result<Option<u64>> {
        let state = self.shared.lock();
        Ok(state
            .commits
            .get(&(group.to_string(), topic.to_string(), partition))
            .copied())
    }
}

struct EmbeddedReader {
    shared: Arc<Shared>,
    cursors: BTreeMap<(String, u32), u64>,
    appended: watch::Receiver<u64>,
    /// Round-robin start so one busy partition cannot starve the others.
    next_cursor: usize,
}

#[async_trait]
impl RecordStream for EmbeddedReader {
    async fn next_batch(&mut self, max: usize) -> Result<Vec<Record>> {
        loop {
            // Mark the current version seen before looking, so an append racing with us wakes us up.
            self.appended.borrow_and_update();
            let mut batch = Vec::new();
            {
                let state = self.shared.lock();
                let cursor_count = self.cursors.len().max(1);
                let keys: Vec<(String, u32)> = self.cursors.keys().cloned().collect();
                for step in 0..keys.len() {
                    let key = &keys[(self.next_cursor + step) % cursor_count];
                    let Some(records) = state.topics.get(&key.0).and_then(|p| p.get(key.1 as usize)) else {
                        continue;
                    };
                    let Some(offset) = self.cursors.get_mut(key) else {
                        continue;
                    };
                    while (*offset as usize) < records.len() && batch.len() < max {
                        let stored = &records[*offset as usize];
                        batch.push(Record {
                            topic: key.0.clone(),
                            partition: key.1,
                            offset: *offset,
                            key: stored.key.clone(),
                            payload: stored.payload.as_ref().clone(),
                        });
                        *offset += 1;
                    }
                    if batch.len() >= max {
                        break;
                    }
                }
                self.next_cursor = self.next_cursor.wrapping_add(1);
            }
            if !batch.is_empty() {
                return Ok(batch);
            }
            self.appended.changed().await.map_err(|_| Error::Closed)?;
        }
    }
}

struct EmbeddedMembership {
    shared: Arc<Shared>,
    key: (String, String),
    member_id: u64,
    partitions: u32,
    receiver: mpsc::UnboundedReceiver<Vec<u32>>,
}

#[async_trait]
impl GroupMembership for EmbeddedMembership {
    async fn next_assignment(&mut self) -> Result<Vec<u32>> {
        self.receiver.recv().await.ok_or(Error::Closed)
    }
}

impl Drop for EmbeddedMembership {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        if let Some(members) = state.groups.get_mut(&self.key) {
            members.retain(|m| m.member_id != self.member_id);
            if !members.is_empty() {
                rebalance(members, self.partitions);
            }
        }
    }
}
