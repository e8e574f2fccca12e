//! Content-defined chunking (FastCDC 2020) for bytes that arrive in pieces.
//!
//! [`Chunker`] cuts exactly where `fastcdc::v2020::FastCDC` cuts over the
//! whole input (normalisation level 1, the crate's default), but takes the
//! input a piece at a time: a chunk is handed out as soon as its end is
//! certain, and the chunker never holds more than one maximum-size chunk
//! plus the piece being pushed.
//!
//! How the incremental cut stays exact: FastCDC scans a chunk from
//! `min / 2` pairs on, first with the strict mask up to `avg`, then with the
//! loose mask up to `max`, and cuts at the first position whose gear hash
//! matches. It shrinks its `avg` boundary only when fewer than `avg` bytes
//! remain in the whole input, which we know only at the end. So while the
//! input is still open we scan (resumably) only once `avg` bytes are
//! buffered, where the scan is the one FastCDC makes over any longer input;
//! at the end the remaining bytes go through `fastcdc`'s own `cut`.

use bytes::{Bytes, BytesMut};
use fastcdc::v2020::{self, MASKS, Normalization};

/// The sizes FastCDC aims for: every chunk but the last is at least `min`
/// and at most `max` bytes, and about `avg` on average.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkerConfig {
    /// Smallest chunk (except a blob's last), in bytes.
    pub min: u32,
    /// Average chunk size aimed for, in bytes.
    pub avg: u32,
    /// Largest chunk, in bytes; also bounds the chunker's memory.
    pub max: u32,
}

impl Default for ChunkerConfig {
    /// 16 KiB / 64 KiB / 256 KiB.
    fn default() -> Self {
        Self {
            min: 16 * 1024,
            avg: 64 * 1024,
            max: 256 * 1024,
        }
    }
}

/// Why a [`ChunkerConfig`] is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChunkerConfigError {
    /// A size is outside what FastCDC 2020 allows.
    #[error("chunk {which} size {value} is outside {low}..={high}")]
    OutOfRange {
        /// `min`, `avg` or `max`.
        which: &'static str,
        /// The value given.
        value: u32,
        /// The smallest allowed.
        low: u32,
        /// The largest allowed.
        high: u32,
    },
    /// The sizes are not ordered `min <= avg <= max`.
    #[error("chunk sizes must satisfy min <= avg <= max, got {min}/{avg}/{max}")]
    NotOrdered {
        /// The `min` given.
        min: u32,
        /// The `avg` given.
        avg: u32,
        /// The `max` given.
        max: u32,
    },
}

impl ChunkerConfig {
    /// Check the sizes against FastCDC 2020's bounds (which it would
    /// otherwise enforce by panicking).
    pub fn validate(&self) -> Result<(), ChunkerConfigError> {
        let check = |which, value, low, high| {
            if (low..=high).contains(&value) {
                Ok(())
            } else {
                Err(ChunkerConfigError::OutOfRange {
                    which,
                    value,
                    low,
                    high,
                })
            }
        };
        check("min", self.min, v2020::MINIMUM_MIN, v2020::MINIMUM_MAX)?;
        check("avg", self.avg, v2020::AVERAGE_MIN, v2020::AVERAGE_MAX)?;
        check("max", self.max, v2020::MAXIMUM_MIN, v2020::MAXIMUM_MAX)?;
        if !(self.min <= self.avg && self.avg <= self.max) {
            return Err(ChunkerConfigError::NotOrdered {
                min: self.min,
                avg: self.avg,
                max: self.max,
            });
        }
        Ok(())
    }
}

impl Default for Chunker {
    /// A chunker for [`ChunkerConfig::default`] (which is within FastCDC's
    /// bounds: the test `default_config_is_valid` checks it).
    fn default() -> Self {
        Self::from_valid(ChunkerConfig::default())
    }
}

/// Resumable scan state inside the chunk being built.
#[derive(Debug, Clone, Copy, Default)]
struct Scan {
    /// Next pair index to hash (the pair covers bytes `2i` and `2i + 1`).
    index: usize,
    /// Gear hash so far.
    hash: u64,
}

/// Cuts a stream of bytes into FastCDC 2020 chunks as the bytes arrive.
///
/// You must call [`Chunker::finish`] once the input ends, to get the last
/// chunk(s). An empty input gives no chunks.
#[derive(Debug, Clone)]
pub struct Chunker {
    min: usize,
    avg: usize,
    max: usize,
    mask_s: u64,
    mask_l: u64,
    mask_s_ls: u64,
    mask_l_ls: u64,
    gear: Box<[u64; 256]>,
    gear_ls: Box<[u64; 256]>,
    /// Bytes of the chunk being built (less than `max` between calls).
    buf: BytesMut,
    /// How far the boundary search in `buf` has got; `None` until `avg`
    /// bytes are buffered.
    scan: Option<Scan>,
}

impl Chunker {
    /// A chunker for `config`; fails if the sizes are out of FastCDC's range.
    pub fn new(config: ChunkerConfig) -> Result<Self, ChunkerConfigError> {
        config.validate()?;
        Ok(Self::from_valid(config))
    }

    /// A chunker for a config that passed [`ChunkerConfig::validate`].
    fn from_valid(config: ChunkerConfig) -> Self {
        // Same derivation as `FastCDC::with_level` at level 1.
        let bits = v2020::logarithm2(config.avg);
        let normalization = Normalization::Level1.bits();
        // avg is within 256..=4 MiB, so bits is within 8..=22 and both
        // indices are within MASKS' 26 entries.
        let mask_s = MASKS[(bits + normalization) as usize];
        let mask_l = MASKS[(bits - normalization) as usize];
        let (gear, gear_ls) = v2020::get_gear_with_seed(0);
        Self {
            min: config.min as usize,
            avg: config.avg as usize,
            max: config.max as usize,
            mask_s,
            mask_l,
            mask_s_ls: mask_s << 1,
            mask_l_ls: mask_l << 1,
            gear,
            gear_ls,
            buf: BytesMut::new(),
            scan: None,
        }
    }

    /// Take the next piece of input and append every chunk it completes to
    /// `out`, in order.
    pub fn push(&mut self, mut data: &[u8], out: &mut Vec<Bytes>) {
        while !data.is_empty() {
            // Never buffer more than `max`: a chunk is cut there at the latest.
            let room = self.max - self.buf.len();
            let take = room.min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            while let Some(cut) = self.find_cut() {
                out.push(self.buf.split_to(cut).freeze());
                self.scan = None;
            }
        }
    }

    /// End the input: append the remaining chunk(s) to `out`.
    pub fn finish(&mut self, out: &mut Vec<Bytes>) {
        while !self.buf.is_empty() {
            let (_, cut) = v2020::cut_gear(
                &self.buf,
                self.min,
                self.avg,
                self.max,
                self.mask_s,
                self.mask_l,
                self.mask_s_ls,
                self.mask_l_ls,
                &self.gear,
                &self.gear_ls,
            );
            // cut_gear returns at least 1 for a non-empty input (the whole
            // input when it is at most `min`); guard anyway so a zero can
            // never loop forever.
            let cut = cut.clamp(1, self.buf.len());
            out.push(self.buf.split_to(cut).freeze());
        }
        self.scan = None;
    }

    /// A certain cut point in `buf`, scanning on from where the last call
    /// stopped; `None` if more input is needed to know.
    fn find_cut(&mut self) -> Option<usize> {
        let len = self.buf.len();
        if len < self.avg {
            // Whether the strict-mask region ends at `avg` or earlier
            // depends on how much input is left; wait.
            return None;
        }
        let mut scan = self.scan.unwrap_or(Scan {
            index: self.min / 2,
            hash: 0,
        });
        let remaining = len.min(self.max);
        let center = self.avg;
        let src = &self.buf[..];
        while scan.index < center / 2 && scan.index < remaining / 2 {
            let a = scan.index * 2;
            scan.hash = (scan.hash << 2).wrapping_add(self.gear_ls[src[a] as usize]);
            if scan.hash & self.mask_s_ls == 0 {
                return Some(a);
            }
            scan.hash = scan.hash.wrapping_add(self.gear[src[a + 1] as usize]);
            if scan.hash & self.mask_s == 0 {
                return Some(a + 1);
            }
            scan.index += 1;
        }
        while scan.index < remaining / 2 {
            let a = scan.index * 2;
            scan.hash = (scan.hash << 2).wrapping_add(self.gear_ls[src[a] as usize]);
            if scan.hash & self.mask_l_ls == 0 {
                return Some(a);
            }
            scan.hash = scan.hash.wrapping_add(self.gear[src[a + 1] as usize]);
            if scan.hash & self.mask_l == 0 {
                return Some(a + 1);
            }
            scan.index += 1;
        }
        if len >= self.max {
            // No boundary before `max`: FastCDC cuts at `max`.
            return Some(self.max);
        }
        self.scan = Some(scan);
        None
    }
}

/// Chunk a whole buffer at once (what the incremental chunker must match).
pub fn chunk_all(config: ChunkerConfig, data: &[u8]) -> Result<Vec<Bytes>, ChunkerConfigError> {
    let mut chunker = Chunker::new(config)?;
    let mut out = Vec::new();
    chunker.push(data, &mut out);
    chunker.finish(&mut out);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Deterministic pseudo-random bytes (xorshift), so tests need no seed files.
    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    fn reference(config: ChunkerConfig, data: &[u8]) -> Vec<(usize, usize)> {
        v2020::FastCDC::new(data, config.min, config.avg, config.max)
            .map(|c| (c.offset, c.length))
            .collect()
    }

    fn incremental(config: ChunkerConfig, data: &[u8], piece: usize) -> Vec<(usize, usize)> {
        let mut chunker = Chunker::new(config).unwrap();
        let mut out = Vec::new();
        for p in data.chunks(piece.max(1)) {
            chunker.push(p, &mut out);
        }
        chunker.finish(&mut out);
        let mut offset = 0;
        out.iter()
            .map(|c| {
                let r = (offset, c.len());
                offset += c.len();
                r
            })
            .collect()
    }

    #[test]
    fn matches_fastcdc_on_random_data() {
        let config = ChunkerConfig::default();
        let data = noise(3 * 1024 * 1024 + 12345, 7);
        let want = reference(config, &data);
        assert!(want.len() > 10, "expected many chunks, got {}", want.len());
        for piece in [1usize << 20, 65536, 4096, 1000, 7] {
            assert_eq!(incremental(config, &data, piece), want, "piece {piece}");
        }
    }

    #[test]
    fn zeroes_cut_at_max() {
        let config = ChunkerConfig::default();
        let data = vec![0u8; 600 * 1024];
        let got = incremental(config, &data, 10_000);
        assert_eq!(got, reference(config, &data));
        assert_eq!(got[0].1, 256 * 1024);
        assert_eq!(got[1].1, 256 * 1024);
        assert_eq!(got[2].1, 600 * 1024 - 512 * 1024);
    }

    #[test]
    fn chunks_are_emitted_before_finish() {
        let mut chunker = Chunker::new(ChunkerConfig::default()).unwrap();
        let mut out = Vec::new();
        chunker.push(&noise(1024 * 1024, 3), &mut out);
        assert!(out.len() >= 2, "only {} chunks before finish", out.len());
        assert!(chunker.buf.len() < 256 * 1024);
    }

    #[test]
    fn default_config_is_valid() {
        assert_eq!(ChunkerConfig::default().validate(), Ok(()));
    }

    #[test]
    fn empty_input_has_no_chunks() {
        assert!(chunk_all(ChunkerConfig::default(), b"").unwrap().is_empty());
    }

    #[test]
    fn bad_configs_are_refused() {
        let bad = ChunkerConfig {
            min: 8,
            avg: 64 * 1024,
            max: 256 * 1024,
        };
        assert!(matches!(
            bad.validate(),
            Err(ChunkerConfigError::OutOfRange { which: "min", .. })
        ));
        let unordered = ChunkerConfig {
            min: 64 * 1024,
            avg: 16 * 1024,
            max: 256 * 1024,
        };
        assert!(matches!(
            Chunker::new(unordered),
            Err(ChunkerConfigError::NotOrdered { .. })
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn small_config_matches_fastcdc(len in 0usize..40_000, seed: u64, piece in 1usize..5000) {
            let config = ChunkerConfig { min: 256, avg: 1024, max: 4096 };
            let data = noise(len, seed);
            prop_assert_eq!(incremental(config, &data, piece), reference(config, &data));
        }
    }
}
