//! Packs: the small chunks of one cache fill, stored together.
//!
//! A cold read of many small files fills the cache with one small chunk per
//! file. Stored each under its own random key in `castore.chunks`, with two
//! quota rows each, every chunk dirtied its own B-tree leaves in three
//! tables of a file much larger than redb's page cache: that was two fifths
//! of a mount's CPU on a walk of 50,000 small files. So a cache fill (a
//! blob service with a quota) groups its chunks whose record is at most
//! [`MAX_PACKED_RECORD`] bytes into packs of at most [`MAX_PACK_BYTES`]
//! (within one 64 KiB redb allocation, see `quota::charged_bytes`), each
//! stored once in `castore.packs` under the next pack id (so pack inserts
//! append to the B-tree rather than land at random), and tracked by the
//! quota as one.
//!
//! A pack's value: version byte [`PACK_V1`], member count (u16 LE), then
//! per member its digest (32 bytes), offset and length in the value (u32
//! LE each), then the members' records exactly as `castore.chunks` holds
//! an unpacked chunk (flag byte, raw bytes or one zstd frame), so that a
//! member is decoded, checked, or handed on as its frame like any record.
//!
//! A packed chunk keeps a row in `castore.chunks`, a 17-byte pointer
//! ([`crate::CHUNK_PACKED`], pack id u64 LE, offset and length u32 LE), so
//! every reader keeps one index and an old cache of unpacked records reads
//! as before. A pointer whose pack is gone reads as a missing chunk; one
//! whose bytes are out of the pack's bounds, or whose member fails its
//! check, as a corrupt chunk: that chunk only, its siblings still read.
//! Evicting a pack deletes it and those pointers that still point to it (a
//! member filled again since, into another pack or alone, keeps its new
//! record).

use crate::{B3Digest, Error, Result};

/// The version byte that starts a pack.
pub(crate) const PACK_V1: u8 = 1;
/// Largest chunk record (flag byte included) that goes into a pack.
pub(crate) const MAX_PACKED_RECORD: usize = 16 * 1024;
/// Largest pack value: with its key and redb's leaf overhead it stays
/// within one 64 KiB allocation.
pub(crate) const MAX_PACK_BYTES: usize = 60 * 1024;
/// Bytes of a pack's header before its member entries.
const HEADER_LEN: usize = 3;
/// Bytes of one member entry in a pack's header.
const ENTRY_LEN: usize = 32 + 4 + 4;
/// Bytes of a pointer record in `castore.chunks`.
pub(crate) const POINTER_LEN: usize = 1 + 8 + 4 + 4;

/// Where a packed chunk's record is: its pack, and its bytes in the pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pointer {
    /// The pack's id (its key in `castore.packs`).
    pub(crate) pack: u64,
    /// Where the member's record starts in the pack's value.
    pub(crate) offset: u32,
    /// The member record's length.
    pub(crate) len: u32,
}

impl Pointer {
    /// Its record in `castore.chunks`.
    pub(crate) fn encode(&self) -> [u8; POINTER_LEN] {
        let mut out = [0u8; POINTER_LEN];
        out[0] = crate::CHUNK_PACKED;
        out[1..9].copy_from_slice(&self.pack.to_le_bytes());
        out[9..13].copy_from_slice(&self.offset.to_le_bytes());
        out[13..17].copy_from_slice(&self.len.to_le_bytes());
        out
    }

    /// The pointer `record` is, `None` if it is a record of another kind;
    /// an error naming `digest` if it is a pointer of the wrong length.
    pub(crate) fn decode(digest: &B3Digest, record: &[u8]) -> Result<Option<Self>> {
        if record.first() != Some(&crate::CHUNK_PACKED) {
            return Ok(None);
        }
        let bytes: &[u8; POINTER_LEN] = record.try_into().map_err(|_| {
            Error::storage_msg(format!(
                "chunk record {digest} is corrupt: a pack pointer of {} bytes, not {POINTER_LEN}",
                record.len()
            ))
        })?;
        let [_, p @ .., o0, o1, o2, o3, l0, l1, l2, l3] = *bytes;
        Ok(Some(Self {
            pack: u64::from_le_bytes(p),
            offset: u32::from_le_bytes([o0, o1, o2, o3]),
            len: u32::from_le_bytes([l0, l1, l2, l3]),
        }))
    }

    /// The member's record in `pack` (the value of this pointer's pack):
    /// an error naming `digest` if the pointer reaches past its end.
    pub(crate) fn member<'a>(&self, digest: &B3Digest, pack: &'a [u8]) -> Result<&'a [u8]> {
        let start = self.offset as usize;
        let end = start.saturating_add(self.len as usize);
        pack.get(start..end).ok_or_else(|| {
            Error::storage_msg(format!(
                "chunk record {digest} is corrupt: bytes {start}..{end} of pack {} \
                 of {} bytes",
                self.pack,
                pack.len()
            ))
        })
    }
}

/// A pack's value and where each member went in it.
pub(crate) struct Encoded {
    /// The value for `castore.packs`.
    pub(crate) value: Vec<u8>,
    /// Each member's digest, offset and length, in order.
    pub(crate) members: Vec<(B3Digest, u32, u32)>,
}

/// Encode a pack of `records` (digest, chunk record), at most `u16::MAX`
/// of them and small enough that offsets fit in a u32 (packs are made of
/// at most [`MAX_PACK_BYTES`]; callers group them so).
pub(crate) fn encode_pack<R: AsRef<[u8]>>(records: &[(B3Digest, R)]) -> Result<Encoded> {
    let n = u16::try_from(records.len())
        .map_err(|_| Error::storage_msg(format!("a pack of {} members", records.len())))?;
    let header = HEADER_LEN + ENTRY_LEN * records.len();
    let body: usize = records.iter().map(|(_, r)| r.as_ref().len()).sum();
    let total = header + body;
    if u32::try_from(total).is_err() {
        return Err(Error::storage_msg(format!("a pack of {total} bytes")));
    }
    let mut value = Vec::with_capacity(total);
    value.push(PACK_V1);
    value.extend_from_slice(&n.to_le_bytes());
    let mut members = Vec::with_capacity(records.len());
    let mut offset = header;
    for (digest, record) in records {
        let len = record.as_ref().len();
        // Both fit: `total` does.
        let (o, l) = (offset as u32, len as u32);
        value.extend_from_slice(digest.as_bytes());
        value.extend_from_slice(&o.to_le_bytes());
        value.extend_from_slice(&l.to_le_bytes());
        members.push((*digest, o, l));
        offset += len;
    }
    for (_, record) in records {
        value.extend_from_slice(record.as_ref());
    }
    Ok(Encoded { value, members })
}

/// The members (digest, offset, length) a pack's header lists, each
/// checked to lie within the pack: an error naming pack `id` otherwise.
pub(crate) fn pack_members(id: u64, value: &[u8]) -> Result<Vec<(B3Digest, u32, u32)>> {
    let corrupt = |why: String| Error::storage_msg(format!("pack {id} is corrupt: {why}"));
    let (&version, rest) = value.split_first().ok_or_else(|| corrupt("empty".into()))?;
    if version != PACK_V1 {
        return Err(corrupt(format!("unknown version {version}")));
    }
    let n = match rest {
        [a, b, ..] => u16::from_le_bytes([*a, *b]) as usize,
        _ => return Err(corrupt("no member count".into())),
    };
    let header = HEADER_LEN + ENTRY_LEN * n;
    let entries = value
        .get(HEADER_LEN..header)
        .ok_or_else(|| corrupt(format!("{n} members do not fit in {} bytes", value.len())))?;
    let mut out = Vec::with_capacity(n);
    for (i, e) in entries.chunks_exact(ENTRY_LEN).enumerate() {
        let (d, rest) = e.split_at(32);
        let digest = B3Digest::try_from(d).map_err(|e| corrupt(format!("member {i}: {e}")))?;
        let word = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let (offset, len) = (word(&rest[..4]), word(&rest[4..8]));
        let end = (offset as usize).saturating_add(len as usize);
        if (offset as usize) < header || end > value.len() {
            return Err(corrupt(format!(
                "member {i} at {offset}..{end}, outside {header}..{}",
                value.len()
            )));
        }
        out.push((digest, offset, len));
    }
    Ok(out)
}

/// A fill's records as [`group`] splits them: those stored alone, and the
/// groups stored as packs.
pub(crate) type Grouped = (Vec<(B3Digest, Vec<u8>)>, Vec<Vec<(B3Digest, Vec<u8>)>>);

/// Split a fill's records: those that go alone, and groups to pack (each
/// of two or more records, within [`MAX_PACK_BYTES`] with its header). A
/// digest that comes twice is kept once.
pub(crate) fn group(records: Vec<(B3Digest, Vec<u8>)>) -> Grouped {
    let mut alone = Vec::new();
    let mut groups: Vec<Vec<(B3Digest, Vec<u8>)>> = Vec::new();
    let mut current: Vec<(B3Digest, Vec<u8>)> = Vec::new();
    let mut current_bytes = HEADER_LEN;
    let mut seen = std::collections::HashSet::with_capacity(records.len());
    for (digest, record) in records {
        if !seen.insert(digest) {
            continue;
        }
        if record.len() > MAX_PACKED_RECORD {
            alone.push((digest, record));
            continue;
        }
        let need = ENTRY_LEN + record.len();
        if current_bytes + need > MAX_PACK_BYTES || current.len() == usize::from(u16::MAX) {
            groups.push(std::mem::take(&mut current));
            current_bytes = HEADER_LEN;
        }
        current_bytes += need;
        current.push((digest, record));
    }
    groups.push(current);
    // A group of one gains nothing from a pack.
    let mut packs = Vec::with_capacity(groups.len());
    for g in groups {
        match g.len() {
            0 => {}
            1 => alone.extend(g),
            _ => packs.push(g),
        }
    }
    (alone, packs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_and_pointers_round_trip_and_bad_ones_are_refused() {
        let recs: Vec<(B3Digest, Vec<u8>)> = (0..3u8)
            .map(|i| (B3Digest::of(&[i]), vec![0, i, i, i]))
            .collect();
        let enc = encode_pack(&recs).unwrap();
        let members = pack_members(7, &enc.value).unwrap();
        assert_eq!(members, enc.members);
        for ((d, r), (md, o, l)) in recs.iter().zip(&members) {
            assert_eq!(d, md);
            let p = Pointer {
                pack: 7,
                offset: *o,
                len: *l,
            };
            let rec = p.encode();
            assert_eq!(Pointer::decode(d, &rec).unwrap(), Some(p));
            assert_eq!(p.member(d, &enc.value).unwrap(), &r[..]);
        }
        let d = recs[0].0;
        assert_eq!(Pointer::decode(&d, b"\x00abc").unwrap(), None);
        assert!(Pointer::decode(&d, b"\x02abc").is_err());
        let far = Pointer {
            pack: 7,
            offset: 10,
            len: u32::MAX,
        };
        assert!(far.member(&d, &enc.value).is_err());
        assert!(pack_members(7, b"").is_err());
        assert!(pack_members(7, b"\x02\x00\x00").is_err());
        assert!(pack_members(7, &enc.value[..50]).is_err());
        let mut bad = enc.value.clone();
        bad[3 + 32] = 0; // first member's offset now inside the header
        assert!(pack_members(7, &bad).is_err());
    }

    #[test]
    fn grouping_fills_packs_and_leaves_big_and_lone_records() {
        let rec = |i: u32, len: usize| (B3Digest::of(&i.to_le_bytes()), vec![0u8; len]);
        // 40 records of 2 KiB: two packs; one big record alone; a repeat
        // dropped.
        let mut records: Vec<_> = (0..40).map(|i| rec(i, 2048)).collect();
        records.push(rec(100, MAX_PACKED_RECORD + 1));
        records.push(rec(3, 2048));
        let (alone, packs) = group(records);
        assert_eq!(alone.len(), 1);
        assert_eq!(packs.len(), 2);
        assert_eq!(packs.iter().map(Vec::len).sum::<usize>(), 40);
        for p in &packs {
            assert!(encode_pack(p).unwrap().value.len() <= MAX_PACK_BYTES);
        }
        // One small record: alone.
        let (alone, packs) = group(vec![rec(1, 100)]);
        assert_eq!((alone.len(), packs.len()), (1, 0));
    }
}
